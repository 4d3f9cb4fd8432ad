"""The UnRAVEl pipeline on files: encode audio to latents, decode latents to audio
(the latent generator is `unravel.generator`).

The Python API the CLI, the Pd bridge and the web app call. Outputs are named after their
inputs and never overwritten unless `force`. Every file is written under a temporary
name and renamed; the files of one result (a `.npy` and its latent wav) are renamed
together once both are written (safewrite.write_set).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from unravel import audio, limits, safewrite
from unravel import latents as latent_io
from unravel.errors import UnravelError

if TYPE_CHECKING:
    from unravel.model import Model

PathLike = str | os.PathLike


def _progress(items: list, progress: bool, desc: str) -> Iterable:
    """Items wrapped in a progress bar on stderr (a terminal, more than one item)."""
    if not progress or len(items) < 2:
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit="file", file=sys.stderr, disable=None, leave=False)


# A file at least this long (seconds of audio) shows its own status line on a terminal.
LONG_FILE_SECONDS = 10.0


@contextlib.contextmanager
def _working(desc: str, frames: int, show: bool) -> Iterator[None]:
    """On a terminal (stderr) when `show`: a line `desc: done/frames frames [elapsed]`,
    refreshed while the model works on the whole file in one call, filled when it returns."""
    if not show or not sys.stderr.isatty():
        yield
        return
    from tqdm import tqdm
    bar = tqdm(total=frames, desc=desc, unit="frames", file=sys.stderr, leave=False)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
        bar.update(frames)
    finally:
        stop.set()
        ticker.join()
        bar.close()


def _require(model: "Model", method: str) -> None:
    if method not in model.methods:
        raise UnravelError(f"{model.path}: model has no {method} method")
    if model.latent_dims is None or model.ratio is None:
        raise UnravelError(f"{model.path}: model does not say its latent size and ratio")
    mp = model.methods[method]
    for value, what in ((mp.in_channels, "input channels"), (mp.out_channels, "output channels")):
        if not 1 <= value <= limits.MAX_CHANNELS:
            raise UnravelError(f"{model.path}: {method} declares {value} {what}; a model may "
                               f"have 1 to {limits.MAX_CHANNELS}")


def _targets(paths: list[Path], force: bool) -> None:
    """Refuse duplicate or (unless force) existing output paths, before any work is done."""
    seen: set[Path] = set()
    for p in paths:
        if p in seen:
            raise UnravelError(f"{p}: two inputs would write the same output file")
        seen.add(p)
        if p.exists() and not force:
            raise UnravelError(f"{p}: already exists (use --force to overwrite)")


def encode_targets(inputs: Sequence[PathLike], out_dir: PathLike, latent_wav: bool = False,
                   force: bool = False, extensions: Sequence[str] = audio.AUDIO_EXTENSIONS
                   ) -> tuple[list[Path], list[Path], list[Path]]:
    """Check what encode_files would read and write: (audio files, .npy paths, latent wav paths).
    Raises UnravelError for missing inputs, an unusable output folder or outputs that exist."""
    found = audio.scan_audio(inputs, extensions)
    out = safewrite.check_writable_dir(out_dir)
    files = [f for f, _ in found]
    npys = [out / f"{name}.npy" for _, name in found]
    wavs = [out / f"{name}{latent_io.LATENT_WAV_SUFFIX}" for _, name in found]
    _targets(npys + (wavs if latent_wav else []), force)
    return files, npys, wavs


def encode_files(model: "Model", inputs: Sequence[PathLike], out_dir: PathLike,
                 latent_wav: bool = False, progress: bool = True, force: bool = False,
                 extensions: Sequence[str] = audio.AUDIO_EXTENSIONS,
                 written: Callable[[Path], None] | None = None, jobs: int = 1,
                 latent_subtype: str = "double", resampler: str = "sinc") -> list[Path]:
    """Encode audio files/folders to `<out_dir>/<name>.npy` (float32 (1, D, T)); with
    `latent_wav` also `<name>.latent.wav` (`latent_subtype`: latents.SUBTYPES); audio at
    another rate is resampled with `resampler` (audio.resample). Folders are scanned recursively for `extensions`
    (names: see `audio.scan_audio`). Each file goes to the model at its own length, as
    UnRAVEl's encoder passes it (no padding to whole frames), and as if alone (a streaming
    export's caches reset, see encode_audio). `written` is called with each
    file as it is written. `jobs` > 1 encodes the files in that many worker processes
    (unravel.workers: the same bytes; `written` then hears of each file when all are done).
    Returns the `.npy` paths."""
    from unravel.workers import check_jobs, map_files
    check_jobs(jobs)
    _require(model, "encode")
    files, npys, wavs = encode_targets(inputs, out_dir, latent_wav, force, extensions)
    for f in files:   # every file fits in memory, before anything is written
        limits.check_memory(audio.load_size(f, model.sr, model.in_channels),
                            f"{f}: reading it as {model.in_channels} channels at {model.sr} Hz",
                            "split the file")
    subtype = latent_io.SUBTYPES[latent_subtype]
    items = [(f, npy, wav if latent_wav else None, force, subtype, resampler)
             for f, npy, wav in zip(files, npys, wavs)]
    if jobs > 1:
        made = map_files(model, _encode_one, [item + (False,) for item in items], jobs)
    else:
        made = (_encode_one(model, *item, progress) for item in _progress(items, progress, "encode"))
    for paths in made:
        for p in paths if written else ():
            written(p)
    return npys


def encode_audio(model: "Model", x: np.ndarray, sr: int, resampler: str = "sinc") -> np.ndarray:
    """(c, n) audio at `sr` -> (D, T) latents, as encode_files encodes a file: resampled to
    the model's rate (`resampler`: see audio.resample), mixed to its inputs, at its own length (no padding to whole frames),
    as if alone (a streaming export's caches are reset first: Model.reset)."""
    _require(model, "encode")
    model.reset()
    return model.encode(audio.conform(x, sr, model.sr, model.in_channels, resampler),
                        whole_frames=False)


def _encode_one(model: "Model", f: Path, npy: Path, wav: Path | None, force: bool,
                subtype: str, resampler: str, progress: bool) -> list[Path]:
    """Encode one audio file to `npy` (and the latent wav `wav` unless None, libsndfile's
    `subtype`); returns the files written. `progress`: a status line for a long file."""
    x, sr = audio.read(f)
    long = progress and x.shape[1] >= LONG_FILE_SECONDS * sr
    with _working(f"encode {f.name}", x.shape[1] * model.sr // sr // model.ratio, long):
        z = encode_audio(model, x, sr, resampler)
    items = [(npy, latent_io.npy_writer(z))]
    if wav is not None:
        items.append((wav, latent_io.wav_writer(z, latent_io.latent_rate(model.sr, model.ratio), subtype)))
    return safewrite.write_set(items, force=force)   # the .npy and its latent wav, or neither


def decode_targets(latents: Sequence[PathLike], out_dir: PathLike,
                   force: bool = False) -> tuple[list[Path], list[Path]]:
    """Check what decode_files would read and write: (latent files, audio paths).
    Raises UnravelError for missing inputs, an unusable output folder or outputs that exist."""
    paths = latent_io.find_files(latents)
    out = safewrite.check_writable_dir(out_dir)
    targets = [out / f"{latent_io.stem(p)}.wav" for p in paths]
    _targets(targets, force)
    for p, t in zip(paths, targets):
        if p.resolve() == t.resolve():
            raise UnravelError(f"{p}: decoding would overwrite this input; choose another -o folder")
    return paths, targets


def decode_files(model: "Model", latents: Sequence[PathLike], out_dir: PathLike,
                 progress: bool = True, force: bool = False, subtype: str = "float") -> list[Path]:
    """Decode latent files (`.npy` or latent wav, folders expanded) to `<out_dir>/<name>.wav`
    at the model's rate (`subtype`: audio.SUBTYPES, 32-bit float or 16-bit PCM clipped to
    -1..1 by libsndfile as UnRAVEl's decoder writes it). Latent dims must match the model's."""
    _require(model, "decode")
    paths, targets = decode_targets(latents, out_dir, force)
    # Read everything first: a bad file stops the batch before anything is written.
    arrays = [latent_io.read(p, model.latent_dims, expected_by=f"model {model.path.name}") for p in paths]
    for p, z in zip(paths, arrays):
        check_decode(model, z, str(p))
    for z, target in _progress(list(zip(arrays, targets)), progress, "decode"):
        long = progress and z.shape[1] * model.ratio >= LONG_FILE_SECONDS * model.sr
        with _working(f"decode {target.name}", z.shape[1], long):
            y = model.decode(z)
        audio.write(target, y, model.sr, subtype=audio.SUBTYPES[subtype], force=force)
    return targets


def check_decode(model: "Model", z: np.ndarray, what: str) -> None:
    """UnravelError naming `what` when the model cannot decode or decoding (D, T) latents
    `z` would not fit in memory."""
    _require(model, "decode")
    limits.check_memory(2 * 4 * z.shape[1] * model.ratio * model.out_channels,
                        f"{what}: decoding {z.shape[1]} frames to {model.out_channels} channels",
                        "split the latents")
