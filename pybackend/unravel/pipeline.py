"""The UnRAVEl pipeline on files: encode audio, latent statistics, generate latents, decode.

The Python API the CLI, the Pd bridge and the web app call. Outputs named after their
inputs (encode, decode) are never overwritten unless `force`; generated files get the
next free number (`<pattern>-<dist>-001`, ...). Every file is written under a temporary
name and renamed.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from unravel import audio, distributions, patterns, stats, tempo
from unravel import latents as latent_io
from unravel.errors import UnravelError

if TYPE_CHECKING:
    from unravel.model import Model

PathLike = str | os.PathLike
DEFAULT_BPM = 120.0


def _progress(items: list, progress: bool, desc: str) -> Iterable:
    """Items wrapped in a progress bar on stderr (a terminal, more than one item)."""
    if not progress or len(items) < 2:
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit="file", file=sys.stderr, disable=None, leave=False)


def _require(model: "Model", method: str) -> None:
    if method not in model.methods:
        raise UnravelError(f"{model.path}: model has no {method} method")
    if model.latent_dims is None or model.ratio is None:
        raise UnravelError(f"{model.path}: model does not say its latent size and ratio")


def _targets(paths: list[Path], force: bool) -> None:
    """Refuse duplicate or (unless force) existing output paths, before any work is done."""
    seen: set[Path] = set()
    for p in paths:
        if p in seen:
            raise UnravelError(f"{p}: two inputs would write the same output file")
        seen.add(p)
        if p.exists() and not force:
            raise UnravelError(f"{p}: already exists (use --force to overwrite)")


def find_latents(inputs: Sequence[PathLike]) -> list[Path]:
    """Expand inputs: files are kept, folders become their `.npy` files (sorted) plus the
    latent wavs that have no `.npy` of the same name."""
    return audio.expand_inputs(inputs, _folder_latents,
                               "folder has no latent files (.npy or latent .wav)",
                               "no latent files given")


def _folder_latents(folder: Path) -> list[Path]:
    npys = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() == ".npy")
    stems = {latent_io.stem(f) for f in npys}
    wavs = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() == ".wav"
                  and latent_io.stem(f) not in stems)
    return sorted(npys + wavs)


def read_latents(inputs: Sequence[PathLike], dims: int | None = None) -> tuple[list[Path], list[np.ndarray]]:
    """Read latent files (folders expanded); all must have the same number of dims
    (`dims`, or the first file's)."""
    paths = find_latents(inputs)
    arrays = []
    for p in paths:
        z = latent_io.read(p, dims)
        dims = z.shape[0] if dims is None else dims
        arrays.append(z)
    return paths, arrays


def encode_targets(inputs: Sequence[PathLike], out_dir: PathLike, latent_wav: bool = False,
                   force: bool = False) -> tuple[list[Path], list[Path], list[Path]]:
    """Check what encode_files would read and write: (audio files, .npy paths, latent wav paths).
    Raises UnravelError for missing inputs, an unusable output folder or outputs that exist."""
    files = audio.find_audio(inputs)
    out = audio.check_writable_dir(out_dir)
    npys = [out / f"{f.stem}.npy" for f in files]
    wavs = [out / f"{f.stem}{latent_io.LATENT_WAV_SUFFIX}" for f in files]
    _targets(npys + (wavs if latent_wav else []), force)
    return files, npys, wavs


def encode_files(model: "Model", inputs: Sequence[PathLike], out_dir: PathLike,
                 latent_wav: bool = False, progress: bool = True, force: bool = False,
                 jobs: int = 1) -> list[Path]:
    """Encode audio files/folders to `<out_dir>/<name>.npy` (float32 (1, D, T)); with
    `latent_wav` also `<name>.latent.wav`. Returns the `.npy` paths. `jobs` > 1 encodes
    the files in that many worker processes (unravel.workers: the same bytes)."""
    from unravel.workers import check_jobs, map_files
    check_jobs(jobs)
    _require(model, "encode")
    files, npys, wavs = encode_targets(inputs, out_dir, latent_wav, force)
    items = [(f, npy, wav if latent_wav else None, force) for f, npy, wav in zip(files, npys, wavs)]
    if jobs > 1:
        return map_files(model, _encode_one, items, jobs)
    return [_encode_one(model, *item) for item in _progress(items, progress, "encode")]


def _encode_one(model: "Model", f: Path, npy: Path, wav: Path | None, force: bool) -> Path:
    """Encode one audio file to `npy` (and the latent wav `wav` unless None)."""
    x = audio.load(f, model.sr, model.in_channels)
    z = model.encode(x)
    latent_io.write_npy(npy, z, force=force)
    if wav is not None:
        latent_io.write_wav(wav, z, latent_io.latent_rate(model.sr, model.ratio), force=force)
    return npy


def stats_files(latents: Sequence[PathLike], iqr: bool = False) -> dict:
    """Statistics of one or more latent files taken together (frames concatenated), JSON-able."""
    paths, arrays = read_latents(latents)
    s = stats.compute(np.concatenate(arrays, axis=1))
    return {"files": [str(p) for p in paths], **s.to_dict(iqr)}


def resolve_points(points: int | None, bpm: float | None, sr: int, ratio: int) -> tuple[int, dict | None]:
    """The block length in frames: `points`, or the k nearest `bpm`, or the k nearest 120 BPM.
    Returns it and, for a BPM, {target, bpm, error}."""
    if points is not None and bpm is not None:
        raise UnravelError("generate: give --points or --bpm, not both")
    if points is not None:
        if points < 1:
            raise UnravelError(f"generate: points must be >= 1, got {points}")
        return int(points), None
    target = DEFAULT_BPM if bpm is None else float(bpm)
    t, err = tempo.nearest(target, sr, ratio)
    return t.k, {"target": target, "bpm": t.bpm, "error": err}


def check_generate(pattern: str, dist: str, points: int, dims: int, loops: int) -> int:
    """UnravelError for a bad pattern, distribution, points or loops; else the length in frames."""
    if pattern not in patterns.PATTERNS:
        raise UnravelError(f"generate: unknown pattern {pattern!r} (one of {', '.join(patterns.PATTERNS)})")
    if dist not in distributions.DISTRIBUTIONS:
        raise UnravelError(f"generate: unknown distribution {dist!r} "
                           f"(one of {', '.join(distributions.DISTRIBUTIONS)})")
    if points < 1:
        raise UnravelError(f"generate: points must be >= 1, got {points}")
    return patterns.check(pattern, points, dims, loops)


def generate(z: np.ndarray, pattern: str = "default", dist: str = "normal", iqr: bool = False,
             points: int = 11, loops: int = 1, seed: int = 0) -> np.ndarray:
    """Synthetic (D, T') latents from the statistics of (D, T) latents `z`: points drawn
    from `dist`, arranged by `pattern` (all randomness from `seed`)."""
    check_generate(pattern, dist, points, z.shape[0], loops)
    return _generate(stats.compute(z), pattern, dist, iqr, points, loops, seed)


def _generate(s: stats.Stats, pattern: str, dist: str, iqr: bool, points: int, loops: int,
              seed: int) -> np.ndarray:
    """generate() from the latents' statistics `s`, arguments already checked."""
    rng = np.random.default_rng(seed)
    a = distributions.sample(s, dist, points, rng, iqr)
    b = distributions.sample(s, dist, points, rng, iqr) if pattern in patterns.TWO_BLOCK_PATTERNS else None
    rows = patterns.apply(pattern, a, b, rng, loops, scale=s.centre_spread(iqr)[1])
    return np.ascontiguousarray(rows.T, dtype=np.float32)


def generate_files(latents: Sequence[PathLike], out_dir: PathLike, pattern: str = "default",
                   dist: str = "normal", iqr: bool = False, points: int | None = None,
                   bpm: float | None = None, loops: int = 1, files: int = 1, seed: int = 0,
                   sr: int = 44100, ratio: int = 2048) -> list[Path]:
    """Generate `files` latent sequences from the statistics of `latents`.

    File i uses seed `seed + i`. Each gets `<pattern>-<dist>-NNN.npy`, a latent wav
    (`.latent.wav`, 64-bit float, floor(sr/ratio) Hz) and a `.json` sidecar whose `argv`
    re-makes it byte for byte (`unravel <argv> -o DIR`). Returns the `.npy` paths.
    """
    if files < 1:
        raise UnravelError(f"generate: files must be >= 1, got {files}")
    k, bpm_info = resolve_points(points, bpm, sr, ratio)
    paths, arrays = read_latents(latents)
    z = np.concatenate(arrays, axis=1)
    check_generate(pattern, dist, k, z.shape[0], loops)
    s = stats.compute(z)
    out = audio.check_writable_dir(out_dir)
    rate = latent_io.latent_rate(sr, ratio)
    inputs = [str(p.resolve()) for p in paths]
    sha = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    suffixes = (".npy", latent_io.LATENT_WAV_SUFFIX, ".json")
    written = []
    for i in range(files):
        file_seed = int(seed) + i
        g = _generate(s, pattern, dist, iqr, k, loops, file_seed)
        argv = (["generate", *inputs, "--pattern", pattern,
                 "--dist", dist] + (["--iqr"] if iqr else [])
                + ["--points", str(k), "--loops", str(loops), "--files", "1",
                   "--seed", str(file_seed), "--sr", str(sr), "--ratio", str(ratio)])
        name = audio.free_name(out, f"{pattern}-{dist}", suffixes)
        sidecar = {
            "command": "unravel " + shlex.join(argv) + " -o DIR",
            "argv": argv, "inputs": inputs, "inputs_sha256": sha,
            "pattern": pattern, "dist": dist, "iqr": iqr, "points": k, "bpm": bpm_info,
            "loops": loops, "seed": file_seed, "sr": sr, "ratio": ratio, "latent_rate": rate,
            "shape": [1, int(g.shape[0]), int(g.shape[1])],
            "npy": name + ".npy", "latent_wav": name + latent_io.LATENT_WAV_SUFFIX,
            "unravel_version": _version(),
        }
        npy = latent_io.write_npy(out / f"{name}.npy", g)
        latent_io.write_wav(out / f"{name}{latent_io.LATENT_WAV_SUFFIX}", g, rate)
        latent_io.write_json(out / f"{name}.json", sidecar)
        written.append(npy)
    return written


def decode_targets(latents: Sequence[PathLike], out_dir: PathLike,
                   force: bool = False) -> tuple[list[Path], list[Path]]:
    """Check what decode_files would read and write: (latent files, audio paths).
    Raises UnravelError for missing inputs, an unusable output folder or outputs that exist."""
    paths = find_latents(latents)
    out = audio.check_writable_dir(out_dir)
    targets = [out / f"{latent_io.stem(p)}.wav" for p in paths]
    _targets(targets, force)
    for p, t in zip(paths, targets):
        if p.resolve() == t.resolve():
            raise UnravelError(f"{p}: decoding would overwrite this input; choose another -o folder")
    return paths, targets


def decode_files(model: "Model", latents: Sequence[PathLike], out_dir: PathLike,
                 progress: bool = True, force: bool = False) -> list[Path]:
    """Decode latent files (`.npy` or latent wav, folders expanded) to `<out_dir>/<name>.wav`
    (32-bit float at the model's rate). Latent dims must match the model's."""
    _require(model, "decode")
    paths, targets = decode_targets(latents, out_dir, force)
    # Read everything first: a bad file stops the batch before anything is written.
    arrays = [latent_io.read(p, model.latent_dims, expected_by=f"model {model.path.name}") for p in paths]
    for z, target in _progress(list(zip(arrays, targets)), progress, "decode"):
        y = model.decode(z)
        audio.write(target, y, model.sr, force=force)
    return targets


def _version() -> str:
    from unravel import __version__
    return __version__
