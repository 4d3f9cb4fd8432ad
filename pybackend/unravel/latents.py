"""Latent files: `.npy` (float32, (1, D, T)), latent wav (D channels, one frame per step), JSON sidecars.

In memory a latent sequence is a float32 array of shape (D, T).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from unravel import audio, safewrite
from unravel.errors import UnravelError, first_line

LATENT_WAV_SUFFIX = ".latent.wav"


def latent_rate(sr: int, ratio: int) -> int:
    """Sample rate of a latent wav: floor(sr / ratio), at least 1 (21 Hz at 44100/2048)."""
    return max(1, int(sr) // int(ratio))


def stem(path: str | os.PathLike) -> str:
    """The file name without `.npy`, `.latent.wav` or `.wav`."""
    name = Path(path).name
    for suffix in (LATENT_WAV_SUFFIX, ".npy", ".wav"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def read(path: str | os.PathLike, dims: int | None = None, expected_by: str = "") -> np.ndarray:
    """Read a `.npy` or latent wav file as float32 (D, T).

    `.npy` may be (1, D, T), (D, T) or (T, D); a 2-D array is read as (D, T) unless `dims`
    says otherwise (or, when `dims` is unknown, unless its first axis is the longer one).
    With `dims` given, a file with another latent size raises UnravelError (the message
    names `expected_by`, e.g. the model, when given).
    """
    path = audio.input_file(path, "a latent file (.npy or latent .wav)")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        z = _read_npy(path, dims)
    elif suffix == ".wav":
        z = _read_wav(path)
    else:
        raise UnravelError(f"{path}: not a latent file (expected .npy or latent .wav)")
    if z.shape[1] == 0:
        raise UnravelError(f"{path}: latents have no frames")
    if not np.all(np.isfinite(z)):
        raise UnravelError(f"{path}: latents contain NaN or infinite values")
    if dims is not None and z.shape[0] != dims:
        by = f" by {expected_by}" if expected_by else ""
        raise UnravelError(f"{path}: latents have {z.shape[0]} dims, {dims} expected{by}")
    return z


def check_npy_header(path: Path) -> None:
    """UnravelError unless the `.npy` header's shape and dtype fit in the file (a header may
    claim any shape: nothing is allocated before this check)."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            major, _ = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
            data_bytes = os.fstat(f.fileno()).st_size - f.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        raise UnravelError(f"{path}: not a readable .npy file ({first_line(e)})") from None
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if claimed > data_bytes:
        raise UnravelError(f"{path}: .npy header claims shape {shape} ({claimed} bytes), the "
                           f"file holds {data_bytes}")


def _read_npy(path: Path, dims: int | None) -> np.ndarray:
    check_npy_header(path)
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UnravelError(f"{path}: not a readable .npy file ({first_line(e)})") from None
    if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.number) \
            or np.issubdtype(a.dtype, np.complexfloating):
        raise UnravelError(f"{path}: .npy does not hold real numbers (dtype {a.dtype})")
    if a.ndim == 3:
        if a.shape[0] != 1:
            raise UnravelError(f"{path}: latent shape {a.shape}, expected (1, D, T)")
        a = a[0]
    elif a.ndim == 2:
        rows, cols = a.shape
        if dims is not None:
            if rows != dims and cols == dims:
                a = a.T
        elif rows > cols:
            a = a.T
    else:
        raise UnravelError(f"{path}: latent shape {a.shape}, expected (1, D, T), (D, T) or (T, D)")
    return np.ascontiguousarray(a, dtype=np.float32)


def _read_wav(path: Path) -> np.ndarray:
    try:
        data, _ = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        cause = getattr(e, "error_string", None) or first_line(e)
        raise UnravelError(f"{path}: not a readable latent wav ({cause})") from None
    return np.ascontiguousarray(data.T, dtype=np.float32)


def find_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand inputs: files are kept, folders become their `.npy` files (sorted) plus the
    latent wavs that have no `.npy` of the same name."""
    return audio.expand_inputs(inputs, _folder_files,
                               "folder has no latent files (.npy or latent .wav)",
                               "no latent files given")


def _folder_files(folder: Path) -> list[Path]:
    npys = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() == ".npy")
    stems = {stem(f) for f in npys}
    wavs = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() == ".wav"
                  and stem(f) not in stems)
    return sorted(npys + wavs)


def read_files(inputs: Sequence[str | os.PathLike], dims: int | None = None
               ) -> tuple[list[Path], list[np.ndarray]]:
    """Read latent files (folders expanded: `find_files`); all must have the same number of
    dims (`dims`, or the first file's)."""
    paths = find_files(inputs)
    arrays = []
    for p in paths:
        z = read(p, dims)
        dims = z.shape[0] if dims is None else dims
        arrays.append(z)
    return paths, arrays


def write_npy(path: str | os.PathLike, z: np.ndarray, force: bool = False) -> Path:
    """Write (D, T) latents as float32 (1, D, T) `.npy` (temporary name, then rename)."""
    return safewrite.write_file(path, npy_writer(z), force=force)


def npy_writer(z: np.ndarray) -> Callable[[str], None]:
    """A writer (for safewrite.write_file, write_set) of (D, T) latents as float32 (1, D, T) `.npy`."""
    z = _as_dt(z)
    buf = io.BytesIO()
    np.save(buf, z[None].astype(np.float32))
    return safewrite.bytes_writer(buf.getvalue())


def write_wav(path: str | os.PathLike, z: np.ndarray, rate: int, subtype: str = "DOUBLE",
              force: bool = False) -> Path:
    """Write (D, T) latents as a wav with D channels at `rate` Hz (64-bit float by default)."""
    return safewrite.write_file(path, wav_writer(z, rate, subtype, path), force=force)


SUBTYPES = {"double": "DOUBLE", "float": "FLOAT"}   # --latent-subtype -> libsndfile's name


def wav_writer(z: np.ndarray, rate: int, subtype: str = "DOUBLE",
               path: str | os.PathLike = "latent wav") -> Callable[[str], None]:
    """A writer (for safewrite.write_file, write_set) of (D, T) latents as a D-channel wav."""
    z = _as_dt(z)
    if subtype not in ("DOUBLE", "FLOAT"):
        raise UnravelError(f"{path}: latent wav subtype must be DOUBLE or FLOAT, not {subtype}")
    return audio.wav_writer(z, rate, subtype=subtype)


def write_json(path: str | os.PathLike, data: dict, force: bool = False) -> Path:
    """Write a JSON sidecar (temporary name, then rename)."""
    return safewrite.write_file(path, json_writer(data), force=force)


def json_writer(data: dict) -> Callable[[str], None]:
    """A writer (for safewrite.write_file, write_set) of a JSON sidecar."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return safewrite.bytes_writer(text.encode())


def _as_dt(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim == 3 and z.shape[0] == 1:
        z = z[0]
    if z.ndim != 2:
        raise UnravelError(f"latents must have shape (D, T), got {z.shape}")
    return z
