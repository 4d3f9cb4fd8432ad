"""Diffusion checkpoints: reading, writing and the choice of the U-Net's architecture.

Checkpoints are `torch.save`d dicts with the reference keys (`model_state_dict`,
`optimizer_state_dict`, `scheduler_state_dict`, `epoch`, and the Flex'ed fork's
`latent_length`, `rave_dims`); ours add `arch`, the U-Net's DiffusionModel keyword
arguments. They are only ever read with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unravel import audio, limits, safewrite
from unravel.diffusion.vdiffusion import (FLEX_PRESETS, ORIGINAL_ARCH, SMALL_PRESETS, DiffusionModel,
                                          check_arch)
from unravel.errors import UnravelError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
DEFAULT_CHECKPOINT = DATA_DIR / "diffusion.pt"
PREFIXES = ("net.", "diffusion.net.", "sampler.net.")
# The first convolution of UNetV0 (latent dims -> channels[0]); its shape[1] is the latent dims.
IN_KEY = "blocks.2.net.block.blocks.0.block.weight"
ORIGINAL_LATENT_LENGTH = 4096


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
    path = audio.input_file(path, "a diffusion checkpoint (.pt)", "no such checkpoint file")
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
    path = audio.input_file(path, "an architecture file (.json)", "no such architecture file")
    if path.stat().st_size > limits.MAX_ARCH_FILE_BYTES:
        raise UnravelError(f"{path}: an architecture file of more than "
                           f"{limits.MAX_ARCH_FILE_BYTES} bytes")
    try:
        arch = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UnravelError(f"{path}: not a JSON architecture file ({e})") from None
    if not isinstance(arch, dict):
        raise UnravelError(f"{path}: architecture must be a JSON object")
    arch.pop("in_channels", None)
    return check_arch(arch, str(path))


def arch_names() -> list[str]:
    """The preset names arch_from_name takes without a latent length: original, flex-L, small ones."""
    return ["original", *(f"flex-{n}" for n in FLEX_PRESETS), *SMALL_PRESETS]


def arch_from_name(spec: str | dict | os.PathLike | None, latent_length: int | None = None) -> tuple[dict, str]:
    """An architecture from a preset name (tiny, small, medium; original, the original
    project's; flex, the Flex'ed preset for `latent_length`; flex-L, the one for L), a JSON
    file or a dict."""
    if isinstance(spec, dict):
        return check_arch(spec, "architecture"), "given architecture"
    if str(spec) == "original":
        return check_arch(ORIGINAL_ARCH, "preset"), "the original 4096 preset"
    named = re.fullmatch(r"flex-(\d+)", str(spec or ""))
    if named:
        spec, latent_length = "flex", int(named.group(1))
    if spec is None or str(spec) == "flex":
        if latent_length not in FLEX_PRESETS:
            raise UnravelError(f"no Flex'ed preset for latent length {latent_length} "
                               f"(have {', '.join(map(str, FLEX_PRESETS))})")
        return check_arch(FLEX_PRESETS[latent_length], "preset"), f"Flex'ed preset {latent_length}"
    if str(spec) in SMALL_PRESETS:
        return check_arch(SMALL_PRESETS[str(spec)], "preset"), f"preset {spec}"
    if not str(spec).endswith(".json") and not Path(spec).exists():
        raise UnravelError(f"unknown architecture {spec!r} (use {', '.join(arch_names())}, flex "
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
    if length > limits.MAX_LATENT_FRAMES:
        raise UnravelError(f"{source}: says latent_length {length}, more than the "
                           f"{limits.MAX_LATENT_FRAMES} frames a sample may have")
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
    """Write a checkpoint with the reference keys plus `arch` (temporary name, then rename);
    its tensors are CPU copies, so it loads on a machine without the training's GPU."""
    ckpt = {
        "model_state_dict": _cpu(model.state_dict()),
        "optimizer_state_dict": _cpu(optimizer.state_dict()) if optimizer is not None else {},
        "scheduler_state_dict": scheduler.state_dict() if scheduler is not None else {},
        "epoch": int(epoch),
        "latent_length": int(latent_length),
        "rave_dims": int(model.in_channels),
        "arch": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in model.arch.items()},
        **(extra or {}),
    }
    buf = io.BytesIO()   # in memory first: torch's file writer aborts on a full disk
    torch.save(ckpt, buf)
    return safewrite.write_bytes(path, buf.getvalue(), force=force)


def _cpu(obj):
    """`obj` (nested dicts, lists, tuples of tensors) with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj
