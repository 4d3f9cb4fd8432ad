"""Audio files: read any format libsndfile reads, resample, mix channels, write wav atomically."""

from __future__ import annotations

import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import soundfile as sf
from unravel import safewrite
from unravel.errors import UnravelError, first_line
from unravel.safewrite import check_writable_dir  # noqa: F401 - part of this module's API

# File name endings treated as audio when a folder is expanded.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc",
                    ".mp3", ".au", ".caf", ".w64", ".rf64")


def read(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 of shape (channels, n) and its sample rate."""
    path = Path(path)
    if not path.exists():
        raise UnravelError(f"{path}: no such file")
    if path.is_dir():
        raise UnravelError(f"{path}: is a folder, expected an audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        cause = getattr(e, "error_string", None) or first_line(e)
        raise UnravelError(f"{path}: not a readable audio file ({cause})") from None
    except OSError as e:
        raise UnravelError(f"{path}: {e.strerror or e}") from None
    if data.shape[0] == 0:
        raise UnravelError(f"{path}: audio file has no samples")
    if not np.all(np.isfinite(data)):
        raise UnravelError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(data.T), int(sr)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample (channels, n) audio from sr_in to sr_out with a polyphase anti-aliasing filter.

    The rate ratio is approximated by a fraction with denominator <= 1000 (exact for the
    usual rates); the output has round(n * sr_out / sr_in) samples.
    """
    if sr_in <= 0 or sr_out <= 0:
        raise UnravelError(f"resample: bad sample rates {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly   # slow import: only when resampling
    frac = Fraction(sr_out, sr_in).limit_denominator(1000)
    y = resample_poly(audio.astype(np.float64), frac.numerator, frac.denominator, axis=-1)
    n_out = int(round(audio.shape[-1] * sr_out / sr_in))
    if y.shape[-1] < n_out:
        y = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n_out - y.shape[-1])])
    return np.ascontiguousarray(y[..., :n_out], dtype=np.float32)


def mix(audio: np.ndarray, channels: int) -> np.ndarray:
    """Mix (c, n) audio to `channels` channels.

    Same count: unchanged. To mono: the mean. From mono: the channel duplicated. Otherwise
    each output channel j takes input channel j (when fewer outputs) or input channel
    j mod c (when more).
    """
    c = audio.shape[0]
    if channels < 1:
        raise UnravelError(f"mix: bad channel count {channels}")
    if c == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    if c == 1:
        return np.repeat(audio, channels, axis=0)
    if channels < c:
        return np.ascontiguousarray(audio[:channels])
    return np.ascontiguousarray(audio[[j % c for j in range(channels)]])


def load(path: str | os.PathLike, sr: int, channels: int) -> np.ndarray:
    """Read an audio file resampled to `sr` and mixed to `channels`: float32 (channels, n)."""
    audio, file_sr = read(path)
    return mix(resample(audio, file_sr, sr), channels)


def write(path: str | os.PathLike, audio: np.ndarray, sr: int, subtype: str = "FLOAT",
          force: bool = False) -> Path:
    """Write (channels, n) audio as a wav file (temporary name, then rename).

    FLOAT (32-bit) and DOUBLE (64-bit) files hold only the samples (no time-stamped PEAK
    chunk), so the same audio always gives the same bytes; other subtypes go through
    libsndfile.
    """
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None]
    if subtype in ("FLOAT", "DOUBLE"):
        dtype = "<f4" if subtype == "FLOAT" else "<f8"
        return atomic_write(path, lambda tmp: write_float_wav(tmp, audio, int(sr), dtype), force=force)
    return atomic_write(path, lambda tmp: sf.write(tmp, audio.T, int(sr), subtype=subtype,
                                                  format="WAV"), force=force)


def write_float_wav(path: str | os.PathLike, audio: np.ndarray, sr: int, dtype: str = "<f4") -> None:
    """Write (channels, n) samples as an IEEE-float wav (fmt, fact, data chunks) in place."""
    data = np.ascontiguousarray(np.asarray(audio).T, dtype=dtype)   # (n, channels) interleaved
    frames, channels = data.shape
    width = data.dtype.itemsize
    size = data.nbytes
    if size + 50 >= 2 ** 32:
        raise UnravelError(f"{path}: too much audio for a wav file ({frames} frames)")
    fmt = struct.pack("<HHIIHH", 3, channels, sr, sr * channels * width, channels * width, 8 * width)
    header = (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 12 + 8 + size) + b"WAVE"
              + b"fmt " + struct.pack("<I", len(fmt)) + fmt
              + b"fact" + struct.pack("<II", 4, frames)
              + b"data" + struct.pack("<I", size))
    with open(path, "wb") as f:
        f.write(header)
        f.write(data.tobytes())


def find_audio(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand inputs: files are kept, folders become their audio files (sorted, not recursive).

    A missing input or a folder with no audio file raises UnravelError.
    """
    return expand_inputs(
        inputs,
        lambda folder: sorted(f for f in folder.iterdir()
                              if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS),
        f"folder has no audio files ({', '.join(e[1:] for e in AUDIO_EXTENSIONS[:5])}, ...)",
        "no input files given")


def expand_inputs(inputs: Sequence[str | os.PathLike], folder_files: Callable[[Path], list[Path]],
                  empty_folder: str, nothing_given: str) -> list[Path]:
    """Expand inputs: files are kept, folders become `folder_files(folder)`.

    A missing input raises UnravelError, so does a folder with no files
    (`<folder>: <empty_folder>`) and an empty result (`nothing_given`).
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = folder_files(p)
            if not found:
                raise UnravelError(f"{p}: {empty_folder}")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise UnravelError(f"{p}: no such file or folder")
    if not out:
        raise UnravelError(nothing_given)
    return out


def atomic_write(path: str | os.PathLike, writer: Callable[[str], object],
                 force: bool = False) -> Path:
    """Call writer(tmp_name) on a temporary file beside `path`, then rename it to `path`
    (see unravel.safewrite.write_file: a new name or a regular file, existing ones only
    with `force`, the temporary file removed on any failure)."""
    return safewrite.write_file(path, writer, force=force)


def free_name(folder: Path, stem: str, suffixes: Iterable[str]) -> str:
    """The first stem of the form `<stem>-NNN` for which no `<stem>-NNN<suffix>` exists."""
    suffixes = list(suffixes)
    i = 1
    while True:
        name = f"{stem}-{i:03d}"
        if not any((folder / (name + s)).exists() for s in suffixes):
            return name
        i += 1
