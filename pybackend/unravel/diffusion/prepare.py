"""Training data: audio cut into chunks and encoded into (1, D, L) latents as the
reference preprocess makes them, and the folder of such latents read back for training."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from unravel import audio as audio_io
from unravel import latents as latents_io
from unravel import limits, safewrite
from unravel.settings import Settings
from unravel.errors import UnravelError


def prepare_files(model, s: Settings, progress: bool = False) -> list[Path]:
    """Training latents as the reference preprocess makes them, for the settings `s`
    (`operations.PREPARE`: inputs, output, latent_length, no_normalize, jobs, force).

    Each input is read at the model's rate (`resampler`: see audio.resample; `pcm16`: FFmpeg's
    16-bit route, audio.read_pcm16), mixed to mono, cut into chunks of
    latent_length * ratio samples (the last partial chunk dropped), each chunk encoded,
    z-scored over the whole chunk (unless `no_normalize`), zero-padded on the
    right to latent_length frames and written as float32 (1, D, L) `<name>_partNNN.npy`.
    Folders are scanned with their subfolders; `<name>` is the file's stem, with its
    subfolders in front for files below a given folder (`drums--kick_part000.npy`) and its
    folders for a name an earlier input already has (see `audio.unique_names`), so two
    files of one name in different folders both make latents. `latent_length` is at
    least 256 (limits.MIN_TRAIN_LENGTH), as train-diffusion needs. `jobs` > 1 prepares the files
    in that many worker processes (unravel.workers: the same bytes).

    The folder's manifest (MANIFEST) says `"complete": false` while a run writes and lists
    the finished set last: a run killed midway leaves a set that says it is incomplete, which
    train-diffusion refuses and the next run into the folder names (it goes on with `force`).
    """
    from unravel.workers import map_files
    latent_length, normalize_latents, force, jobs = s.latent_length, not s.no_normalize, s.force, s.jobs
    if latent_length < limits.MIN_TRAIN_LENGTH:
        raise UnravelError(f"latent_length must be at least {limits.MIN_TRAIN_LENGTH} (what "
                           f"train-diffusion takes), got {latent_length}")
    if model.ratio is None or "encode" not in model.methods:
        raise UnravelError(f"{model.path}: model has no encode method")
    found = audio_io.scan_audio(s.inputs)
    files, names = [p for p, _ in found], audio_io.unique_names(found)
    folder = safewrite.check_writable_dir(s.output)
    before = _begin(folder, force)
    chunk = latent_length * model.ratio
    items = [(path, name, folder, latent_length, normalize_latents, force,
              "pcm16" if s.pcm16 else s.resampler)
             for path, name in zip(files, names)]
    if jobs > 1:
        out = [p for paths in map_files(model, _prepare_one, items, jobs) for p in paths]
    else:
        from tqdm import tqdm
        out = [p for item in tqdm(items, desc="prepare", unit="file", file=sys.stderr,
                                  disable=not progress, leave=False)
               for p in _prepare_one(model, *item)]
    if not out:
        raise UnravelError(f"no input is at least {chunk} samples ({chunk / model.sr:.1f} s at "
                           f"{model.sr} Hz) long: nothing to prepare for latent length {latent_length}")
    _write_manifest(folder, True, sorted(set(before) | {p.name for p in out}), latent_length)
    return out


MANIFEST = "prepare-diffusion.json"     # a prepare-diffusion folder's manifest, written last


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest ({"complete": bool, "files": [names], ...}), None without one."""
    path = folder / MANIFEST
    if not os.path.lexists(path):
        return None
    try:
        path = audio_io.input_file(path, "a prepare-diffusion manifest (.json)")
        if path.stat().st_size > limits.MAX_MANIFEST_BYTES:
            raise ValueError("too large")
        m = json.loads(path.read_text())
        if not isinstance(m, dict) or not isinstance(m.get("files"), list):
            raise ValueError("no file list")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UnravelError(f"{path}: not a prepare-diffusion manifest ({e})") from None
    return m


def interrupted(folder: Path) -> UnravelError:
    return UnravelError(f"{folder}: holds the latents of an interrupted prepare-diffusion run "
                        f"({MANIFEST} says incomplete): prepare again with --force, or into "
                        f"another folder")


def _begin(folder: Path, force: bool) -> list[str]:
    """Mark the folder's set incomplete until this run ends; returns the names the folder's
    finished runs made. A set left incomplete is refused unless `force`."""
    m = read_manifest(folder)
    if m is not None and not m.get("complete") and not force:
        raise interrupted(folder)
    before = [str(n) for n in m["files"]] if m is not None else []
    _write_manifest(folder, False, before, None)
    return before


def _write_manifest(folder: Path, complete: bool, files: list[str], latent_length: int | None) -> None:
    data = {"complete": complete, "files": files, "latent_length": latent_length}
    safewrite.write_bytes(folder / MANIFEST, json.dumps(data, indent=1).encode(),
                          force=os.path.lexists(folder / MANIFEST))


def _prepare_one(model, path: Path, name: str, folder: Path, latent_length: int,
                 normalize_latents: bool, force: bool, resampler: str = "sinc") -> list[Path]:
    """The training latents of one audio file (see prepare_files), as if alone: a streaming
    export's caches are reset first (Model.reset) and go on from chunk to chunk. `resampler`
    "pcm16": read through FFmpeg to 16-bit mono (audio.read_pcm16), as the original does."""
    chunk = latent_length * model.ratio
    model.reset()
    mono = (audio_io.read_pcm16(path, model.sr) if resampler == "pcm16"
            else audio_io.load(path, model.sr, 1, resampler))[0]
    out = []
    for i in range(len(mono) // chunk):
        piece = audio_io.mix(mono[None, i * chunk:(i + 1) * chunk], model.in_channels)
        z = torch.from_numpy(model.encode(piece))[None]
        if normalize_latents:
            z = (z - z.mean()) / z.std()
        z = torch.nn.functional.pad(z, (0, max(0, latent_length - z.shape[2])))[..., :latent_length]
        target = folder / f"{name}_part{i:03d}.npy"
        out.append(latents_io.write_npy(target, z[0].numpy(), force=force))
    return out


def load_latent_folder(folder: str | os.PathLike) -> tuple[torch.Tensor, list[str]]:
    """All `.npy` latents of a folder as (N, D, L) float32 and their names (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UnravelError(f"{folder}: no such folder of training latents")
    m = read_manifest(folder)
    if m is not None and not m.get("complete"):
        raise interrupted(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix == ".npy" and p.is_file())
    if not files:
        raise UnravelError(f"{folder}: no .npy latent files (make them with unravel prepare-diffusion)")
    arrays = []
    for p in files:
        latents_io.check_npy_header(p)
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
