"""Sampling: seeded noise, the sampler over seed groups, slerp between two seeds' latents,
the global z-score, and `diffuse_files` (sample, decode, write wav/npy/json per result)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from unravel import audio as audio_io
from unravel import device as _device
from unravel import limits
from unravel import latents as latents_io
from unravel import safewrite
from unravel.diffusion.checkpoint import Diffuser, cached_checkpoint
from unravel.diffusion.values import check_seed, random_seed
from unravel.diffusion.vdiffusion import total_factor
from unravel.errors import UnravelError
from unravel.settings import Settings


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
                 on_step: Callable[[int, int], None] | None = None,
                 latent_length: int | None = None,
                 device: str | torch.device = "cpu",
                 sampler: str = "v") -> tuple[list[torch.Tensor], list[list[int]]]:
    """Denoised latents (1, D, L*mult) per seed (not normalized, on the CPU), and the seed
    groups run together. L is `latent_length`, or the checkpoint's when None.

    Seeds are sampled `batch` at a time in one forward pass; a group of one gives exactly
    the reference's numbers, a larger group the same up to float rounding (~1e-5). The
    network runs on `device` (the noise is drawn on the CPU, so every device starts from the
    same numbers). `on_step(done, total)` reports progress. `sampler`: 'v' (the reference's)
    or 'dpm' (DPM-Solver++(3M), closer to the many-step result in few steps).
    """
    dev = _device.resolve(device)
    _device.deterministic(dev)
    diffuser.model.to(dev)
    length = (latent_length or diffuser.latent_length) * length_mult
    factor = total_factor(diffuser.arch)
    if length % factor:
        raise UnravelError(f"{diffuser.path}: latent length {length} is not a multiple of the "
                           f"network's downsampling {factor}")
    groups = [list(seeds[i:i + max(1, batch)]) for i in range(0, len(seeds), max(1, batch))]
    check_sampling(diffuser, length_mult, max(len(g) for g in groups), latent_length)
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
            z = diffuser.model.sample(noise.to(dev), steps, step, sampler).cpu()
            out.extend(z[i:i + 1].clone() for i in range(len(group)))
    return out, groups


def sampling_memory(arch: dict, dims: int, length: int, batch: int) -> int:
    """Bytes one sampling step of `batch` sequences of `length` frames holds at its peak,
    estimated from the U-Net's shapes: per level the skip and working activations
    (channels x frames), at attention levels the heads' frames x frames score matrices."""
    activations, attention, frames = 8 * dims * length, 0, length
    for channels, factor, items, att in zip(arch["channels"], arch["factors"], arch["items"],
                                            arch["attentions"]):
        frames = -(-frames // factor)
        activations += (2 * items + 4) * channels * frames
        if att:
            attention = max(attention, 3 * (arch.get("attention_heads") or 1) * frames * frames)
    return 4 * batch * (activations + attention)


def check_sampling(diffuser: Diffuser, length_mult: int, batch: int,
                   latent_length: int | None = None) -> None:
    """UnravelError, naming length_mult and batch, when a sampling batch of `latent_length`
    (the checkpoint's when None) x length_mult frames cannot fit in memory."""
    base = latent_length or diffuser.latent_length
    length = base * length_mult
    if length > limits.MAX_LATENT_FRAMES:
        raise UnravelError(f"length_mult {length_mult} x latent length {base} "
                           f"= {length} frames, more than the {limits.MAX_LATENT_FRAMES} a sample "
                           f"may have")
    limits.check_memory(sampling_memory(diffuser.arch, diffuser.dims, length, batch),
                        f"sampling {batch} x {length} latent frames (length_mult {length_mult}, "
                        f"batch {batch})", "lower length_mult or batch")


@dataclass
class Diffused:
    """One generated file set."""
    wav: Path
    npy: Path | None
    sidecar: Path
    seed: int | None
    seeds: tuple[int, ...]
    latent_wav: Path | None = None


def _out_stem(folder: Path, stem: str, force: bool) -> str:
    """`stem`, or `stem-NNN` when a file of that stem exists (unless force)."""
    suffixes = (".wav", ".npy", ".json", ".latent.wav")
    if force or not any((folder / (stem + s)).exists() for s in suffixes):
        return stem
    return audio_io.free_name(folder, stem, suffixes)


@dataclass
class Plan:
    """A diffusion run's settings, checked (`plan`): what `sample_plan` samples and the
    sidecar of `diffuse_files` records."""
    model: object
    diffuser: Diffuser
    seeds: list[int]
    pairs: list[tuple[int, int]] | None     # lerp: the (seed_a, seed_b) of each result
    steps: int
    temperature: float
    latent_scale: float
    skip_normalize: bool
    length_mult: int
    lerp_factor: float
    batch: int
    latent_length: int | None
    sampler: str


def plan(model, s: Settings, device: str | torch.device = "cpu") -> Plan:
    """Check a diffusion run's settings (`operations.DIFFUSE`) against each other, the model
    and the checkpoint (loaded here); UnravelError for a bad combination."""
    if not s.lerp and (s.seed_a is not None or s.seed_b is not None):
        raise UnravelError("seed_a and seed_b need lerp")
    if s.lerp and s.seed is not None:
        raise UnravelError("lerp takes seed_a and seed_b, not seed")
    num, length_mult, batch = s.num, s.length_mult, s.batch
    pairs = None
    if s.lerp:
        a0 = s.seed_a if s.seed_a is not None else random_seed()
        b0 = s.seed_b if s.seed_b is not None else random_seed()
        pairs = [(check_seed(a0 + i, "seed_a"), check_seed(b0 + i, "seed_b")) for i in range(num)]
        seeds = [x for pair in pairs for x in pair]
    else:
        s0 = s.seed if s.seed is not None else random_seed()
        seeds = [check_seed(s0 + i, "seed") for i in range(num)]
    if isinstance(model, (str, os.PathLike)):
        from unravel.model import load_model
        model = load_model(model, device=device)
    if model.latent_dims is None or "decode" not in model.methods:
        raise UnravelError(f"{model.path}: model has no decode method")
    diffuser = cached_checkpoint(s.checkpoint, s.arch)
    if diffuser.dims != model.latent_dims:
        raise UnravelError(f"{diffuser.path}: makes {diffuser.dims}-dim latents, but model "
                           f"{Path(model.path).name} takes {model.latent_dims} dims")
    check_sampling(diffuser, length_mult, min(batch, len(seeds)), s.latent_length)
    frames = (s.latent_length or diffuser.latent_length) * length_mult
    limits.check_memory(4 * len(seeds) * diffuser.dims * frames,
                        f"keeping {len(seeds)} samples of {frames} latent frames (num {num}, "
                        f"length_mult {length_mult})", "lower num or length_mult")
    return Plan(model, diffuser, seeds, pairs, s.steps, s.temperature, s.latent_scale,
                s.skip_normalize, length_mult, s.lerp_factor, batch, s.latent_length, s.sampler)


def sample_plan(p: Plan, progress: bool = False, on_step: Callable[[int, int], None] | None = None,
                device: str | torch.device = "cpu"
                ) -> tuple[list[tuple[int | None, tuple[int, ...], np.ndarray]], list[list[int]]]:
    """Sample a plan's results: [(seed or None for a lerp, the seeds used, (D, L) float32
    latents, normalized unless skip_normalize)] and the seed groups sampled together."""
    latents, groups = sample_seeds(p.diffuser, p.seeds, p.steps, p.temperature, p.length_mult,
                                   p.batch, progress, on_step, p.latent_length,
                                   _device.resolve(device), p.sampler)
    items = ([(None, (a, b), slerp(torch.linspace(0.0, p.lerp_factor, latents[2 * i].shape[-1]),
                                   latents[2 * i], latents[2 * i + 1]))
              for i, (a, b) in enumerate(p.pairs)] if p.pairs is not None
             else [(s, (s,), latents[i]) for i, s in enumerate(p.seeds)])
    out = []
    for s, used, z in items:
        if not p.skip_normalize:
            z = normalize(z, p.latent_scale)
        out.append((s, used, z[0].numpy().astype(np.float32)))
    return out, groups


def diffuse_latents(model, s: Settings, progress: bool = False,
                    on_step: Callable[[int, int], None] | None = None,
                    device: str | torch.device = "cpu"
                    ) -> list[tuple[int | None, tuple[int, ...], np.ndarray]]:
    """Sample latents from a diffusion checkpoint without decoding or writing anything:
    [(seed or None, the seeds used, (D, L) float32 latents)], the latents `diffuse_files`
    decodes and saves for the same settings `s` (`operations.DIFFUSE`)."""
    return sample_plan(plan(model, s, device=device), progress, on_step, device)[0]


def diffuse_files(model, s: Settings, out_dir: str | os.PathLike = ".", progress: bool = False,
                  on_step: Callable[[int, int], None] | None = None,
                  device: str | torch.device = "cpu") -> list[Diffused]:
    """Sample latents from a diffusion checkpoint and decode them with a RAVE model.

    `model` is a unravel.model.Model or a model spec ('default', a path); `s` the settings
    (`operations.DIFFUSE`: the checkpoint, seeds, steps...). Writes per result
    `<name>_<seed>.wav` (or `<name>_<seedA>_<seedB>_slerp.wav`; at the model's rate, 32-bit
    float or `subtype` pcm16), `.npy` latents (1, D, L) when `save_latents`, a D-channel
    `.latent.wav` (one frame per latent step, 64-bit float) when
    `latent_wav`, and a `.json` sidecar with every setting (the device included). The
    diffusion network runs on `device`; the RAVE model decodes where it was loaded. `num`
    results use seeds seed, seed+1, ... (with lerp: seed_a+i, seed_b+i); `latent_length`
    samples that many frames (times length_mult) instead of the checkpoint's, as the
    original generate script's --latent_length does.
    """
    save_latents, force, latent_wav = s.save_latents, s.force, s.latent_wav
    subtype = audio_io.SUBTYPES[s.subtype]
    latent_subtype = latents_io.SUBTYPES[s.latent_subtype]
    name = audio_io.check_name(s.name, "name")
    p = plan(model, s, device=device)
    model, diffuser = p.model, p.diffuser
    frames = (p.latent_length or diffuser.latent_length) * p.length_mult
    limits.check_memory(2 * 4 * frames * (model.ratio or 2048) * model.out_channels,
                        f"decoding {frames} latent frames (length_mult {p.length_mult})",
                        "lower length_mult")
    folder = safewrite.check_writable_dir(out_dir)
    dev = _device.resolve(device)
    lerp = p.pairs is not None

    items, groups = sample_plan(p, progress, on_step, dev)
    group_of = {s: g for g in groups for s in g}

    results: list[Diffused] = []
    for s, used, z_np in items:
        y = model.decode(z_np)
        stem = f"{name}_{used[0]}_{used[1]}_slerp" if lerp else f"{name}_{s}"
        stem = _out_stem(folder, stem, force)
        wav = folder / f"{stem}.wav"
        npy = folder / f"{stem}.npy" if save_latents else None
        lwav = folder / f"{stem}{latents_io.LATENT_WAV_SUFFIX}" if latent_wav else None
        sidecar = {
            "command": "diffuse", "checkpoint": str(diffuser.path), "arch_source": diffuser.arch_source,
            "model": str(model.path), "sr": model.sr, "dims": diffuser.dims,
            "latent_length": p.latent_length or diffuser.latent_length,
            "checkpoint_latent_length": diffuser.latent_length, "length_mult": p.length_mult,
            "steps": p.steps, "sampler": p.sampler, "temperature": p.temperature,
            "latent_scale": p.latent_scale, "skip_normalize": p.skip_normalize, "lerp": lerp,
            "seed": s, "seed_a": used[0] if lerp else None, "seed_b": used[1] if lerp else None,
            "lerp_factor": p.lerp_factor if lerp else None,
            "batch": p.batch, "sampled_together": [group_of[u] for u in used],
            "device": _device.name(dev),
            "model_device": _device.name(getattr(model, "device", torch.device("cpu"))),
            "wav": wav.name, "npy": npy.name if npy else None, "latent_wav": lwav.name if lwav else None,
        }
        js = folder / f"{stem}.json"
        files = [(wav, audio_io.wav_writer(y, model.sr, subtype=subtype))]
        if npy:
            files.append((npy, latents_io.npy_writer(z_np)))
        if lwav:
            files.append((lwav, latents_io.wav_writer(
                z_np, latents_io.latent_rate(model.sr, model.ratio or 2048),
                subtype=latent_subtype)))
        files.append((js, latents_io.json_writer(sidecar)))
        safewrite.write_set(files, force=True)   # the whole set or nothing
        results.append(Diffused(wav, npy, js, s, tuple(used), lwav))
    return results
