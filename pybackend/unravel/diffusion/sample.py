"""Latent diffusion: RAVE-Latent-Diffusion-compatible checkpoints, sampling and training.

Checkpoints are `torch.save`d dicts with the reference keys (`model_state_dict`,
`optimizer_state_dict`, `scheduler_state_dict`, `epoch`, and the Flex'ed fork's
`latent_length`, `rave_dims`); ours add `arch`, the U-Net's DiffusionModel keyword
arguments. They are only ever read with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import random
import re
import secrets
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from unravel import audio as audio_io
from unravel import latents as latents_io
from unravel.errors import UnravelError, first_line
from unravel.vdiffusion import (FLEX_PRESETS, ORIGINAL_ARCH, SMALL_PRESETS, DiffusionModel,
                                check_arch, total_factor)

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_CHECKPOINT = DATA_DIR / "diffusion.pt"
PREFIXES = ("net.", "diffusion.net.", "sampler.net.")
# The first convolution of UNetV0 (latent dims -> channels[0]); its shape[1] is the latent dims.
IN_KEY = "blocks.2.net.block.blocks.0.block.weight"
ORIGINAL_LATENT_LENGTH = 4096
MIN_TRAIN_LENGTH = 256
MAX_SEED = 2**32 - 1  # numpy's limit; the reference seeds numpy with the same number


# ----------------------------------------------------------------------------- checkpoints

@dataclass
class Diffuser:
    """A loaded diffusion checkpoint."""
    path: Path
    model: DiffusionModel
    arch: dict
    arch_source: str          # where the architecture came from
    dims: int                 # latent dims it makes
    latent_length: int        # latent frames per sample (times length_mult)
    epoch: int | None
    meta: dict = field(default_factory=dict)  # the checkpoint's non-tensor entries


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """'default' -> the bundled checkpoint; otherwise the path as given."""
    if str(spec) == "default":
        if not DEFAULT_CHECKPOINT.is_file():
            raise UnravelError(f"{DEFAULT_CHECKPOINT}: the bundled diffusion checkpoint is missing")
        return DEFAULT_CHECKPOINT
    return Path(spec)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """torch.load(path, weights_only=True) with one clear UnravelError per way it can fail."""
    path = Path(path)
    if not path.exists():
        raise UnravelError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise UnravelError(f"{path}: is a folder, expected a diffusion checkpoint (.pt)")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as e:
        raise UnravelError(f"{path}: cannot read ({e.strerror or e})") from None
    if head != b"PK" and head[:1] != b"\x80":  # torch's zip format / a legacy pickle
        raise UnravelError(f"{path}: not a torch checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower():
            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            what = f" ({found.group(1)})" if found else ""
            raise UnravelError(f"{path}: refused by torch.load(weights_only=True): it holds Python "
                               f"objects{what}, not only tensors and plain containers") from None
        raise UnravelError(f"{path}: truncated or corrupt torch checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, IndexError, KeyError):
        raise UnravelError(f"{path}: truncated or corrupt torch checkpoint") from None
    except OSError as e:
        if os.access(path, os.R_OK):  # readable, yet the zip reader fails: a cut-off file
            raise UnravelError(f"{path}: truncated or corrupt torch checkpoint") from None
        raise UnravelError(f"{path}: cannot read ({e.strerror or e})") from None
    if not isinstance(obj, dict):
        raise UnravelError(f"{path}: not a diffusion checkpoint (holds a {type(obj).__name__}, "
                           f"not a dict)")
    return obj


def net_state(obj: dict, source: str) -> dict[str, torch.Tensor]:
    """The U-Net's tensors (keys without the net./diffusion.net./sampler.net. prefix)."""
    state = obj.get("model_state_dict", obj)
    if not isinstance(state, dict) or not state:
        raise UnravelError(f"{source}: has no model_state_dict")
    net: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix = next((p for p in PREFIXES if isinstance(key, str) and key.startswith(p)), None)
        if prefix is None or not isinstance(value, torch.Tensor):
            raise UnravelError(f"{source}: not a RAVE-Latent-Diffusion checkpoint (state-dict key "
                               f"{key!r} is not a tensor under net., diffusion.net. or sampler.net.)")
        net.setdefault(key[len(prefix):], value)
    if IN_KEY not in net or net[IN_KEY].ndim != 3:
        raise UnravelError(f"{source}: not a UNetV0 state dict (no tensor net.{IN_KEY})")
    return net


def read_arch_file(path: str | os.PathLike) -> dict:
    """A JSON file of DiffusionModel keyword arguments, checked."""
    path = Path(path)
    try:
        arch = json.loads(path.read_text())
    except FileNotFoundError:
        raise UnravelError(f"{path}: no such architecture file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnravelError(f"{path}: not a JSON architecture file ({e})") from None
    if not isinstance(arch, dict):
        raise UnravelError(f"{path}: architecture must be a JSON object")
    arch.pop("in_channels", None)
    return check_arch(arch, str(path))


def arch_from_name(spec: str | dict | os.PathLike | None, latent_length: int | None = None) -> tuple[dict, str]:
    """An architecture from a preset name (tiny, small, medium, flex), a JSON file or a dict."""
    if isinstance(spec, dict):
        return check_arch(spec, "architecture"), "given architecture"
    if spec is None or str(spec) == "flex":
        if latent_length not in FLEX_PRESETS:
            raise UnravelError(f"no Flex'ed preset for latent length {latent_length} "
                               f"(have {', '.join(map(str, FLEX_PRESETS))})")
        return check_arch(FLEX_PRESETS[latent_length], "preset"), f"Flex'ed preset {latent_length}"
    if str(spec) in SMALL_PRESETS:
        return check_arch(SMALL_PRESETS[str(spec)], "preset"), f"preset {spec}"
    if not str(spec).endswith(".json") and not Path(spec).exists():
        raise UnravelError(f"unknown architecture {spec!r} (use {', '.join(SMALL_PRESETS)}, flex "
                           f"or a .json file)")
    return read_arch_file(spec), str(spec)


def _choose_arch(obj: dict, source: str, arch_file: str | os.PathLike | None) -> tuple[dict, str]:
    """The architecture, in order: stored in the checkpoint, --arch, Flex'ed preset, original."""
    if isinstance(obj.get("arch"), dict):
        return check_arch(dict(obj["arch"]), f"{source} (stored architecture)"), "the checkpoint"
    if arch_file is not None:
        return arch_from_name(arch_file)
    length = obj.get("latent_length")
    if isinstance(length, int) and length in FLEX_PRESETS:
        return check_arch(FLEX_PRESETS[length], "preset"), f"the Flex'ed preset for {length}"
    return check_arch(ORIGINAL_ARCH, "preset"), "the original 4096 preset"


def _check_shapes(model: DiffusionModel, net: dict[str, torch.Tensor], source: str,
                  arch_source: str) -> None:
    """UnravelError naming the first tensor whose name or shape does not fit the model."""
    hint = "" if arch_source == "the checkpoint" else " (give the right one with --arch FILE.json)"
    expected = model.net.state_dict()
    for key, tensor in expected.items():
        if key not in net:
            raise UnravelError(f"{source}: does not fit the architecture from {arch_source}: "
                               f"tensor net.{key} is missing{hint}")
        if tuple(net[key].shape) != tuple(tensor.shape):
            raise UnravelError(f"{source}: does not fit the architecture from {arch_source}: "
                               f"tensor net.{key} has shape {tuple(net[key].shape)}, expected "
                               f"{tuple(tensor.shape)}{hint}")
    extra = [k for k in net if k not in expected]
    if extra:
        raise UnravelError(f"{source}: does not fit the architecture from {arch_source}: "
                           f"unexpected tensor net.{extra[0]}{hint}")


def build_model(dims: int, arch: dict) -> DiffusionModel:
    """A DiffusionModel with uninitialised weights (for loading into)."""
    with torch.device("meta"):
        model = DiffusionModel(dims, **arch)
    return model.to_empty(device="cpu")


def load_checkpoint(spec: str | os.PathLike, arch: str | os.PathLike | None = None) -> Diffuser:
    """Load a checkpoint (ours, the original's or the Flex'ed fork's); 'default' is the bundled one."""
    path = resolve_checkpoint(spec)
    obj = read_checkpoint(path)
    source = str(path)
    net = net_state(obj, source)
    dims = int(net[IN_KEY].shape[1])
    stored_dims = obj.get("rave_dims")
    if isinstance(stored_dims, int) and stored_dims != dims:
        raise UnravelError(f"{source}: says rave_dims {stored_dims} but its network takes {dims} dims")
    arch_dict, arch_source = _choose_arch(obj, source, arch)
    with torch.device("meta"):
        shape_model = DiffusionModel(dims, **arch_dict)
    _check_shapes(shape_model, net, source, arch_source)
    model = build_model(dims, arch_dict)
    model.net.load_state_dict(net, strict=True)
    model.eval()
    length = obj.get("latent_length")
    length = int(length) if isinstance(length, int) and length > 0 else ORIGINAL_LATENT_LENGTH
    meta = {k: v for k, v in obj.items() if not k.endswith("_state_dict")}
    epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
    return Diffuser(path, model, arch_dict, arch_source, dims, length, epoch, meta)


_CACHE: dict[tuple, Diffuser] = {}


def cached_checkpoint(spec: str | os.PathLike, arch: str | os.PathLike | None = None) -> Diffuser:
    """load_checkpoint, remembering the last one loaded (same file, same mtime, same --arch)."""
    path = resolve_checkpoint(spec)
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns, str(arch))
    except OSError:
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    diffuser = load_checkpoint(path, arch)
    _CACHE.clear()
    if key is not None:
        _CACHE[key] = diffuser
    return diffuser


def save_checkpoint(path: str | os.PathLike, model: DiffusionModel, latent_length: int,
                    epoch: int, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None, extra: dict | None = None, force: bool = True) -> Path:
    """Write a checkpoint with the reference keys plus `arch` (temporary name, then rename)."""
    ckpt = {
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict() if optimizer is not None else {},
        "scheduler_state_dict": scheduler.state_dict() if scheduler is not None else {},
        "epoch": int(epoch),
        "latent_length": int(latent_length),
        "rave_dims": int(model.in_channels),
        "arch": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in model.arch.items()},
        **(extra or {}),
    }
    return audio_io.atomic_write(path, lambda tmp: torch.save(ckpt, tmp), force=force)


# ----------------------------------------------------------------------------- sampling

def check_seed(seed, name: str = "seed") -> int:
    """An integer seed in 0 .. 2**32-1 (what numpy accepts), else UnravelError."""
    value = _as_int(seed, name)
    if not 0 <= value <= MAX_SEED:
        raise UnravelError(f"{name} must be between 0 and {MAX_SEED}, got {value}")
    return value


def random_seed() -> int:
    """A fresh seed (recorded in the sidecar, so the file can be made again)."""
    return secrets.randbelow(2**31)


def make_noise(seed: int, dims: int, length: int, temperature: float = 1.0) -> torch.Tensor:
    """The reference's starting noise: torch.manual_seed(seed); randn(1, dims, length) * temperature."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(1, dims, length, generator=gen) * temperature


def normalize(z: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Global z-score of one sample (1, D, L) (unbiased std, as torch.std), times scale."""
    return (z - z.mean()) / z.std() * scale


def slerp(val: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation per channel: val (L,) weights over time, low/high (1, D, L).

    The angle is between each channel's whole sequences; where it is 0 (identical
    directions) the result is the linear interpolation, its limit.
    """
    unit = (low / torch.norm(low, dim=2, keepdim=True)) * (high / torch.norm(high, dim=2, keepdim=True))
    omega = torch.acos(unit.sum(dim=2, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega)
    res = (torch.sin((1.0 - val) * omega) / so) * low + (torch.sin(val * omega) / so) * high
    linear = (1.0 - val) * low + val * high
    return torch.where(so == 0, linear, res)


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=not enabled,
                leave=False, dynamic_ncols=True)


def sample_seeds(diffuser: Diffuser, seeds: Sequence[int], steps: int = 100, temperature: float = 1.0,
                 length_mult: int = 1, batch: int = 4, progress: bool = False,
                 on_step: Callable[[int, int], None] | None = None) -> tuple[list[torch.Tensor], list[list[int]]]:
    """Denoised latents (1, D, L*mult) per seed (not normalized), and the seed groups run together.

    Seeds are sampled `batch` at a time in one forward pass; a group of one gives exactly
    the reference's numbers, a larger group the same up to float rounding (~1e-5).
    `on_step(done, total)` reports progress.
    """
    length = diffuser.latent_length * length_mult
    factor = total_factor(diffuser.arch)
    if length % factor:
        raise UnravelError(f"{diffuser.path}: latent length {length} is not a multiple of the "
                           f"network's downsampling {factor}")
    groups = [list(seeds[i:i + max(1, batch)]) for i in range(0, len(seeds), max(1, batch))]
    total = steps * len(groups)
    out: list[torch.Tensor] = []
    with _progress_bar(total, "diffuse", progress) as bar:
        done = 0

        def step(_i: int) -> None:
            nonlocal done
            done += 1
            bar.update(1)
            if on_step is not None:
                on_step(done, total)

        for group in groups:
            noise = torch.cat([make_noise(s, diffuser.dims, length, temperature) for s in group])
            z = diffuser.model.sample(noise, steps, step)
            out.extend(z[i:i + 1].clone() for i in range(len(group)))
    return out, groups


@dataclass
class Diffused:
    """One generated file set."""
    wav: Path
    npy: Path | None
    sidecar: Path
    seed: int | None
    seeds: tuple[int, ...]
    latent_wav: Path | None = None


def _as_int(value, name: str) -> int:
    """int from an int, an integral float (Pd atoms) or a numeric string."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UnravelError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise UnravelError(f"{name} must be an integer, got {value!r}")
    return int(f)


def _as_float(value, name: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UnravelError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise UnravelError(f"{name} must be finite, got {value!r}")
    return f


def _as_bool(value, name: str) -> bool:
    if isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise UnravelError(f"{name} must be 0 or 1, got {value!r}")
    return bool(_as_int(value, name))


def _out_stem(folder: Path, stem: str, force: bool) -> str:
    """`stem`, or `stem-NNN` when a file of that stem exists (unless force)."""
    suffixes = (".wav", ".npy", ".json", ".latent.wav")
    if force or not any((folder / (stem + s)).exists() for s in suffixes):
        return stem
    return audio_io.free_name(folder, stem, suffixes)


def diffuse_files(model, checkpoint: str | os.PathLike = "default", out_dir: str | os.PathLike = ".",
                  seed=None, num=1, steps=100, temperature=1.0, latent_scale=1.0,
                  skip_normalize=False, length_mult=1, lerp=False, seed_a=None, seed_b=None,
                  lerp_factor=1.0, save_latents=False, latent_wav=False,
                  arch: str | os.PathLike | None = None,
                  name: str = "diffuse", batch=4, force=False, progress: bool = False,
                  on_step: Callable[[int, int], None] | None = None) -> list[Diffused]:
    """Sample latents from a diffusion checkpoint and decode them with a RAVE model.

    `model` is a unravel.model.Model or a model spec ('default', a path). Writes per result
    `<name>_<seed>.wav` (or `<name>_<seedA>_<seedB>_slerp.wav`; 32-bit float at the model's
    rate), `.npy` latents (1, D, L) when `save_latents`, a D-channel `.latent.wav` (one frame
    per latent step) when `latent_wav`, and a `.json` sidecar with every
    setting. `num` results use seeds seed, seed+1, ... (with lerp: seed_a+i, seed_b+i).
    Numbers may come as floats or strings (Pd atoms); bad values raise UnravelError.
    """
    num = _as_int(num, "num")
    steps = _as_int(steps, "steps")
    length_mult = _as_int(length_mult, "length_mult")
    batch = _as_int(batch, "batch")
    temperature = _as_float(temperature, "temperature")
    latent_scale = _as_float(latent_scale, "latent_scale")
    lerp_factor = _as_float(lerp_factor, "lerp_factor")
    lerp, skip_normalize = _as_bool(lerp, "lerp"), _as_bool(skip_normalize, "skip_normalize")
    save_latents, force = _as_bool(save_latents, "save_latents"), _as_bool(force, "force")
    latent_wav = _as_bool(latent_wav, "latent_wav")
    for value, label in ((num, "num"), (steps, "steps"), (length_mult, "length_mult"), (batch, "batch")):
        if value < 1:
            raise UnravelError(f"{label} must be at least 1, got {value}")
    if not lerp and (seed_a is not None or seed_b is not None):
        raise UnravelError("seed_a and seed_b need lerp")
    if lerp and seed is not None:
        raise UnravelError("lerp takes seed_a and seed_b, not seed")
    if lerp:
        a0 = check_seed(seed_a, "seed_a") if seed_a is not None else random_seed()
        b0 = check_seed(seed_b, "seed_b") if seed_b is not None else random_seed()
        pairs = [(check_seed(a0 + i, "seed_a"), check_seed(b0 + i, "seed_b")) for i in range(num)]
        seeds = [s for pair in pairs for s in pair]
    else:
        s0 = check_seed(seed, "seed") if seed is not None else random_seed()
        seeds = [check_seed(s0 + i, "seed") for i in range(num)]
    if isinstance(model, (str, os.PathLike)):
        from unravel.model import load_model
        model = load_model(model)
    if model.latent_dims is None or "decode" not in model.methods:
        raise UnravelError(f"{model.path}: model has no decode method")
    diffuser = cached_checkpoint(checkpoint, arch)
    if diffuser.dims != model.latent_dims:
        raise UnravelError(f"{diffuser.path}: makes {diffuser.dims}-dim latents, but model "
                           f"{Path(model.path).name} takes {model.latent_dims} dims")
    folder = audio_io.check_writable_dir(out_dir)

    latents, groups = sample_seeds(diffuser, seeds, steps, temperature, length_mult, batch,
                                   progress, on_step)
    group_of = {s: g for g in groups for s in g}

    results: list[Diffused] = []
    items = ([(None, (a, b), slerp(torch.linspace(0.0, lerp_factor, latents[2 * i].shape[-1]),
                                   latents[2 * i], latents[2 * i + 1]))
              for i, (a, b) in enumerate(pairs)] if lerp
             else [(s, (s,), latents[i]) for i, s in enumerate(seeds)])
    for s, used, z in items:
        if not skip_normalize:
            z = normalize(z, latent_scale)
        z_np = z[0].numpy().astype(np.float32)
        y = model.decode(z_np)
        stem = f"{name}_{used[0]}_{used[1]}_slerp" if lerp else f"{name}_{s}"
        stem = _out_stem(folder, stem, force)
        wav = audio_io.write(folder / f"{stem}.wav", y, model.sr, subtype="FLOAT", force=True)
        npy = None
        if save_latents:
            npy = latents_io.write_npy(folder / f"{stem}.npy", z_np, force=True)
        lwav = None
        if latent_wav:
            lwav = latents_io.write_wav(folder / f"{stem}{latents_io.LATENT_WAV_SUFFIX}", z_np,
                                        latents_io.latent_rate(model.sr, model.ratio or 2048), force=True)
        sidecar = {
            "command": "diffuse", "checkpoint": str(diffuser.path), "arch_source": diffuser.arch_source,
            "model": str(model.path), "sr": model.sr, "dims": diffuser.dims,
            "latent_length": diffuser.latent_length, "length_mult": length_mult,
            "steps": steps, "temperature": temperature, "latent_scale": latent_scale,
            "skip_normalize": skip_normalize, "lerp": lerp,
            "seed": s, "seed_a": used[0] if lerp else None, "seed_b": used[1] if lerp else None,
            "lerp_factor": lerp_factor if lerp else None,
            "batch": batch, "sampled_together": [group_of[u] for u in used],
            "wav": wav.name, "npy": npy.name if npy else None, "latent_wav": lwav.name if lwav else None,
        }
        js = latents_io.write_json(folder / f"{stem}.json", sidecar, force=True)
        results.append(Diffused(wav, npy, js, s, tuple(used), lwav))
    return results


# ----------------------------------------------------------------------------- training data

def prepare_files(model, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                  latent_length: int = MIN_TRAIN_LENGTH, normalize_latents: bool = True,
                  force: bool = False, progress: bool = False) -> list[Path]:
    """Training latents as the reference preprocess makes them.

    Each input is read at the model's rate, mixed to mono, cut into chunks of
    latent_length * ratio samples (the last partial chunk dropped), each chunk encoded,
    z-scored over the whole chunk (unless `normalize_latents` is False), zero-padded on the
    right to latent_length frames and written as float32 (1, D, L) `<stem>_partNNN.npy`.
    """
    latent_length = _as_int(latent_length, "latent_length")
    if latent_length < 1:
        raise UnravelError(f"latent_length must be positive, got {latent_length}")
    if model.ratio is None or "encode" not in model.methods:
        raise UnravelError(f"{model.path}: model has no encode method")
    files = audio_io.find_audio(inputs)
    folder = audio_io.check_writable_dir(out_dir)
    chunk = latent_length * model.ratio
    out: list[Path] = []
    from tqdm import tqdm
    for path in tqdm(files, desc="prepare", unit="file", file=sys.stderr, disable=not progress,
                     leave=False):
        mono = audio_io.load(path, model.sr, 1)[0]
        for i in range(len(mono) // chunk):
            piece = audio_io.mix(mono[None, i * chunk:(i + 1) * chunk], model.in_channels)
            z = torch.from_numpy(model.encode(piece))[None]
            if normalize_latents:
                z = (z - z.mean()) / z.std()
            z = torch.nn.functional.pad(z, (0, max(0, latent_length - z.shape[2])))[..., :latent_length]
            target = folder / f"{path.stem}_part{i:03d}.npy"
            out.append(latents_io.write_npy(target, z[0].numpy(), force=force))
    if not out:
        raise UnravelError(f"no input is at least {chunk} samples ({chunk / model.sr:.1f} s at "
                           f"{model.sr} Hz) long: nothing to prepare for latent length {latent_length}")
    return out


def load_latent_folder(folder: str | os.PathLike) -> tuple[torch.Tensor, list[str]]:
    """All `.npy` latents of a folder as (N, D, L) float32 and their names (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UnravelError(f"{folder}: no such folder of training latents")
    files = sorted(p for p in folder.iterdir() if p.suffix == ".npy" and p.is_file())
    if not files:
        raise UnravelError(f"{folder}: no .npy latent files (make them with unravel prepare-diffusion)")
    arrays = []
    for p in files:
        try:
            a = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UnravelError(f"{p}: not a readable .npy file ({e})") from None
        a = np.asarray(a, dtype=np.float32)
        if a.ndim == 3 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 2:
            raise UnravelError(f"{p}: expected latents of shape (1, D, L), got {a.shape}")
        if arrays and a.shape != arrays[0].shape:
            raise UnravelError(f"{p}: shape {a.shape} differs from {files[0].name}'s "
                               f"{arrays[0].shape}; all training latents need one (D, L)")
        if not np.all(np.isfinite(a)):
            raise UnravelError(f"{p}: latents contain NaN or infinite values")
        arrays.append(a)
    return torch.from_numpy(np.stack(arrays)), [p.name for p in files]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: torch.Tensor,
              order: Sequence[int], batch_size: int, accumulation_steps: int,
              noise_std: float = 0.0) -> float:
    """One training epoch over data[order] in batches; returns the mean batch loss.

    Gradients of `accumulation_steps` consecutive batches are averaged into one optimizer
    step; a last, shorter group still makes its step (no batch is dropped).
    """
    model.train()
    batches = [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
    total = 0.0
    for g in range(0, len(batches), accumulation_steps):
        group = batches[g:g + accumulation_steps]
        optimizer.zero_grad(set_to_none=True)
        for b in group:
            x = data[b]
            if noise_std > 0:
                x = x + torch.randn_like(x) * noise_std
            loss = model(x)
            (loss / len(group)).backward()
            total += loss.item()
        optimizer.step()
    return total / len(batches)


def train(latent_dir: str | os.PathLike, out_dir: str | os.PathLike, arch: str | dict = "small",
          name: str = "diffusion", batch_size: int = 8, accumulation_steps: int = 2,
          lr: float = 1e-4, weight_decay: float = 1e-4, scheduler_steps: int = 100,
          gamma: float = 0.99, noise_std: float = 0.1, patience: int = 200,
          max_epochs: int = 25000, max_minutes: float | None = None, split_ratio: float = 0.8,
          save_interval: int = 100, resume: str | os.PathLike | None = None,
          finetune: str | os.PathLike | None = None, seed: int = 664, force: bool = False,
          optimizer_state: bool = True, progress: bool = True) -> dict:
    """Train a diffusion model on a folder of (1, D, L) latents (the Flex'ed recipe).

    AdamW(lr, weight_decay), StepLR(scheduler_steps, gamma) per epoch (finetune: cosine
    annealing to 1e-6 over scheduler_steps), Gaussian noise_std augmentation of the training
    latents, gradient accumulation over `accumulation_steps` batches (the last, shorter
    group of an epoch included, each batch's loss weighted equally), early stop after
    `patience` epochs without a better validation loss (measured with the same sigmas and
    noise every epoch, so epochs compare; the training random stream is left untouched). Writes `<name>_best.pt` (best
    validation loss) and `<name>_last.pt` (every save_interval epochs and at the end).
    `resume` continues a run (weights, optimizer, scheduler, epoch); `finetune` starts
    from a checkpoint's weights with a fresh optimizer. `optimizer_state=False` writes empty
    optimizer/scheduler states (a third of the size; such a checkpoint cannot be resumed).
    Returns a summary dict.
    """
    for value, label in ((batch_size, "batch_size"), (accumulation_steps, "accumulation_steps"),
                         (scheduler_steps, "scheduler_steps"), (patience, "patience"),
                         (max_epochs, "max_epochs"), (save_interval, "save_interval")):
        if value < 1:
            raise UnravelError(f"{label} must be at least 1, got {value}")
    if not 0 < split_ratio <= 1:
        raise UnravelError(f"split_ratio must be in (0, 1], got {split_ratio}")
    if noise_std < 0 or lr <= 0 or weight_decay < 0:
        raise UnravelError("noise_std and weight_decay must be >= 0 and lr > 0")
    if resume is not None and finetune is not None:
        raise UnravelError("give --resume or --finetune, not both")
    seed = check_seed(seed)
    data, names = load_latent_folder(latent_dir)
    n, dims, length = data.shape
    if length < MIN_TRAIN_LENGTH:
        raise UnravelError(f"{latent_dir}: latent length {length} is below {MIN_TRAIN_LENGTH} "
                           f"(prepare with --latent-length {MIN_TRAIN_LENGTH} or more)")
    folder = audio_io.check_writable_dir(out_dir)
    best_path, last_path = folder / f"{name}_best.pt", folder / f"{name}_last.pt"
    if not force and resume is None:
        for p in (best_path, last_path):
            if p.exists():
                raise UnravelError(f"{p}: already exists (use --force to overwrite, or --resume)")

    torch.manual_seed(seed)
    start_epoch, start = 0, resume if resume is not None else finetune
    if start is not None:
        arch_file = arch if isinstance(arch, (str, os.PathLike)) and str(arch).endswith(".json") else None
        diffuser = load_checkpoint(start, arch_file)  # a stored architecture comes first
        model, arch_dict = diffuser.model, diffuser.arch
        if diffuser.dims != dims:
            raise UnravelError(f"{diffuser.path}: was trained on {diffuser.dims}-dim latents, "
                               f"{latent_dir} has {dims}")
        if resume is not None and diffuser.latent_length != length:
            raise UnravelError(f"{diffuser.path}: was trained with latent length "
                               f"{diffuser.latent_length}, {latent_dir} has {length}")
        arch_source = f"{diffuser.arch_source} ({diffuser.path})"
    else:
        arch_dict, arch_source = arch_from_name(arch, length)
        model = DiffusionModel(dims, **arch_dict)
    factor = total_factor(arch_dict)
    if length % factor:
        raise UnravelError(f"latent length {length} is not a multiple of the architecture's "
                           f"downsampling {factor}")

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if finetune is not None:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=scheduler_steps,
                                                               eta_min=1e-6)
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=scheduler_steps, gamma=gamma)
    best_loss = math.inf
    if resume is not None:
        obj = read_checkpoint(resume)
        try:
            optimizer.load_state_dict(obj["optimizer_state_dict"])
            scheduler.load_state_dict(obj["scheduler_state_dict"])
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise UnravelError(f"{resume}: cannot resume: optimizer or scheduler state missing or "
                               f"mismatched ({first_line(e)})") from None
        start_epoch = int(obj.get("epoch", -1)) + 1
        best_loss = float(obj.get("best_val_loss", math.inf))

    order = list(range(n))
    random.Random(seed).shuffle(order)
    split = min(n, max(1, int(n * split_ratio)))
    train_idx, val_idx = order[:split], order[split:]
    if not val_idx:
        val_idx = train_idx
        _log(f"train-diffusion: {n} file(s): validating on the training latents (no augmentation)")
    params = sum(p.numel() for p in model.net.parameters())
    _log(f"train-diffusion: {len(train_idx)} training / {len(val_idx) if val_idx is not train_idx else 0} "
         f"validation latents of shape ({dims}, {length}); architecture from {arch_source}; "
         f"{params} parameters")

    options = {"arch_source": arch_source, "batch_size": batch_size,
               "accumulation_steps": accumulation_steps, "lr": lr, "weight_decay": weight_decay,
               "scheduler_steps": scheduler_steps, "gamma": gamma, "noise_std": noise_std,
               "patience": patience, "split_ratio": split_ratio, "seed": seed,
               "latent_dir": str(latent_dir), "finetune": str(finetune) if finetune else None}
    stale, epoch, train_loss, val_loss = 0, start_epoch - 1, math.nan, math.nan
    t0 = time.monotonic()
    stop_reason = "max epochs"

    def save(path: Path) -> Path:
        return save_checkpoint(path, model, length, epoch, optimizer if optimizer_state else None,
                               scheduler if optimizer_state else None, extra={
            "best_val_loss": best_loss, "train_loss": train_loss, "val_loss": val_loss,
            "training": options}, force=True)

    from tqdm import tqdm
    bar = tqdm(range(start_epoch, max_epochs), desc="train", unit="epoch", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    for epoch in bar:
        perm = [train_idx[i] for i in torch.randperm(len(train_idx)).tolist()]
        train_loss = run_epoch(model, optimizer, data, perm, batch_size, accumulation_steps, noise_std)
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the same sigmas and noise every epoch: comparable losses
            vb = [val_idx[i:i + batch_size] for i in range(0, len(val_idx), batch_size)]
            val_loss = sum(model(data[b]).item() for b in vb) / len(vb)
        scheduler.step()
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=f"{min(best_loss, val_loss):.4f}")
        if not progress:
            _log(f"epoch {epoch + 1}: train loss {train_loss:.5f}, validation loss {val_loss:.5f}")
        if val_loss < best_loss:
            best_loss, stale = val_loss, 0
            save(best_path)
        else:
            stale += 1
        if (epoch + 1) % save_interval == 0:
            save(last_path)
        if stale >= patience:
            stop_reason = f"no better validation loss for {patience} epochs"
            break
        if max_minutes is not None and time.monotonic() - t0 > max_minutes * 60:
            stop_reason = f"time limit {max_minutes:g} min"
            break
    bar.close()
    if epoch < start_epoch:
        raise UnravelError(f"{resume}: already trained {start_epoch} epochs (max_epochs {max_epochs})")
    save(last_path)
    summary = {"best": str(best_path), "last": str(last_path), "epochs": epoch + 1,
               "best_val_loss": best_loss, "train_loss": train_loss, "val_loss": val_loss,
               "stopped": stop_reason, "minutes": round((time.monotonic() - t0) / 60, 2)}
    _log(f"train-diffusion: stopped after epoch {epoch + 1} ({stop_reason}); best validation "
         f"loss {best_loss:.5f}; last train loss {train_loss:.5f}")
    return summary


# ----------------------------------------------------------------------------- command line

def _cli_model(args: argparse.Namespace, spec: str):
    from unravel.model import load_model
    return load_model(spec, threads=getattr(args, "threads", 1))


def cmd_diffuse(args: argparse.Namespace) -> int:
    """`unravel diffuse`: sample, decode, write wav (+ .npy) + .json per result."""
    if args.seed is not None and args.lerp:
        raise UnravelError("--seed is for plain sampling; with --lerp give --seed-a and --seed-b")
    model = _cli_model(args, args.model)
    results = diffuse_files(
        model, args.checkpoint, args.output, seed=args.seed, num=args.num, steps=args.steps,
        temperature=args.temperature, latent_scale=args.latent_scale,
        skip_normalize=args.skip_normalize, length_mult=args.length_mult, lerp=args.lerp,
        seed_a=args.seed_a, seed_b=args.seed_b, lerp_factor=args.lerp_factor,
        save_latents=args.save_latents, latent_wav=args.latent_wav, arch=args.arch, name=args.name, batch=args.batch,
        force=args.force, progress=sys.stderr.isatty())
    for r in results:
        print(r.wav)
        if r.npy:
            print(r.npy)
        if r.latent_wav:
            print(r.latent_wav)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """`unravel prepare-diffusion`: audio -> training latents."""
    model = _cli_model(args, args.model)
    paths = prepare_files(model, args.inputs, args.output, args.latent_length,
                          normalize_latents=not args.no_normalize, force=args.force,
                          progress=sys.stderr.isatty())
    for p in paths:
        print(p)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`unravel train-diffusion`: train on a folder of latents."""
    from unravel.model import set_threads
    set_threads(getattr(args, "threads", 1))
    summary = train(args.latents, args.output, arch=args.arch, name=args.name,
                    batch_size=args.batch_size, accumulation_steps=args.accumulation_steps,
                    lr=args.lr, weight_decay=args.weight_decay, scheduler_steps=args.scheduler_steps,
                    noise_std=args.noise_std, patience=args.patience, max_epochs=args.max_epochs,
                    max_minutes=args.max_minutes, split_ratio=args.split_ratio,
                    save_interval=args.save_interval, resume=args.resume, finetune=args.finetune,
                    seed=args.seed, force=args.force, optimizer_state=not args.no_optimizer_state,
                    progress=sys.stderr.isatty())
    print(summary["best"])
    print(summary["last"])
    return 0
