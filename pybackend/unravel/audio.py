"""Audio files: read any format libsndfile reads (and, with the optional `av` extra, what
FFmpeg reads), resample, mix channels, write wav (through safewrite)."""

from __future__ import annotations

import itertools
import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import soundfile as sf
from unravel import limits, safewrite
from unravel.errors import UnravelError, first_line

# File name endings looked for in folders (and their subfolders) by default: UnRAVEl's encoder's list.
AUDIO_EXTENSIONS = (".wav", ".mp3", ".ogg", ".aac", ".opus", ".aif", ".aiff", ".flac")
# Formats libsndfile does not read (or not everywhere): decoded with PyAV, the `av` extra.
FFMPEG_ONLY = (".aac", ".m4a", ".mp4", ".opus", ".webm", ".wma", ".alac")
AV_EXTRA_HINT = "install the optional extra for it: pip install 'unravel[av]'"
UNKNOWN_FRAMES = 2**62      # libsndfile's frame count of a file that does not say (SF_COUNT_MAX)


def read(path: str | os.PathLike, max_bytes: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 of shape (channels, n) and its sample rate. Its samples
    may take at most `max_bytes` (default limits.audio_budget()): decoding stops with an
    UnravelError as soon as they take more, whatever the file's header claims."""
    path = input_file(path)
    cap = limits.audio_budget() if max_bytes is None else max_bytes
    try:
        data, sr = _read_blocks(path, cap)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        cause = getattr(e, "error_string", None) or first_line(e)
        data, sr = _read_with_av(path, cause, cap)
        data = data.T
    except OSError as e:
        raise UnravelError(f"{path}: {e.strerror or e}") from None
    if data.shape[0] == 0:
        raise UnravelError(f"{path}: audio file has no samples")
    if not np.all(np.isfinite(data)):
        raise UnravelError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(data.T), int(sr)


def input_file(path: str | os.PathLike, expected: str = "an audio file",
               missing: str = "no such file") -> Path:
    """`path` if it is a regular file to read; UnravelError for a missing file (`missing`), a
    folder, a fifo or a device (reading those would block or never end) naming what was
    `expected`."""
    path = Path(path)
    if not path.exists():
        raise UnravelError(f"{path}: {missing}")
    if path.is_dir():
        raise UnravelError(f"{path}: is a folder, expected {expected}")
    if not path.is_file():
        raise UnravelError(f"{path}: not a regular file, expected {expected}")
    return path


def info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(frames, channels, sample rate) of an audio file, from its header (nothing decoded)."""
    path = input_file(path)
    try:
        i = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        cause = getattr(e, "error_string", None) or first_line(e)
        raise UnravelError(f"{path}: not a readable audio file ({cause})") from None
    except OSError as e:
        raise UnravelError(f"{path}: {e.strerror or e}") from None
    return int(i.frames), int(i.channels), int(i.samplerate)


def load_size(path: str | os.PathLike, sr: int, channels: int) -> int:
    """Bytes that load(path, sr, channels) holds at its peak (float64 resampling of every
    channel, then the float32 mix), estimated from the file's header."""
    input_file(path)
    try:
        frames, file_channels, file_sr = info(path)
    except UnravelError:   # a format only PyAV reads: no header to estimate from
        return 0
    if frames >= UNKNOWN_FRAMES:   # a stream that does not say (read() bounds its decoding)
        return 0
    out = frames * sr / max(1, file_sr)
    return int(frames * file_channels * 4 + out * file_channels * 16 + out * channels * 4)


class TooMuchAudio(UnravelError):
    """A file that decodes to more samples than the reader may hold."""


def _too_big(path: Path, cap: int) -> UnravelError:
    return TooMuchAudio(f"{path}: decodes to more than {cap / 2**20:.0f} MB of audio (the most "
                        f"one file may take here; split the file)")


def _read_blocks(path: Path, cap: int) -> tuple[np.ndarray, int]:
    """libsndfile's decoding of `path` block by block: float32 (n, channels), rate; at most
    `cap` bytes of samples."""
    with sf.SoundFile(str(path)) as f:
        blocks, size = [], 0
        while True:
            block = f.read(1 << 16, dtype="float32", always_2d=True)
            if not len(block):
                break
            size += block.nbytes
            if size > cap:
                raise _too_big(path, cap)
            blocks.append(block)
        empty = np.zeros((0, f.channels), np.float32)
        return (np.concatenate(blocks) if blocks else empty), f.samplerate


def _read_with_av(path: Path, cause: str, cap: int, fmt: str = "fltp", layout: str | None = None,
                  rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a file libsndfile could not read (`cause`) with PyAV: float32 (channels, n), rate
    (`fmt`, `layout`, `rate`: FFmpeg's conversion on the way, e.g. s16 mono at a rate).
    Without PyAV, a format only FFmpeg reads names the extra to install."""
    try:
        import av
    except ImportError:
        if path.suffix.lower() in FFMPEG_ONLY:
            raise UnravelError(f"{path}: libsndfile cannot read {path.suffix} files; "
                               f"{AV_EXTRA_HINT}") from None
        raise UnravelError(f"{path}: not a readable audio file ({cause})") from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise UnravelError(f"{path}: no audio stream in this file")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format=fmt, layout=layout, rate=rate)
            chunks, sr, size = [], rate or stream.codec_context.sample_rate, 0
            for frame in itertools.chain(container.decode(stream), [None]):  # None: flush
                for f in to_float.resample(frame):
                    chunks.append(f.to_ndarray().astype(np.float32, copy=False))
                    size += chunks[-1].nbytes
                    if size > cap:
                        raise _too_big(path, cap)
    except (av.FFmpegError, OSError, ValueError, IndexError):
        raise UnravelError(f"{path}: not a readable audio file ({cause})") from None
    if not chunks or not sr:   # FFmpeg guessed a format but found no audio in it
        raise UnravelError(f"{path}: not a readable audio file ({cause})")
    return np.concatenate(chunks, axis=1).astype(np.float32), int(sr)


def read_pcm16(path: str | os.PathLike, sr: int, max_bytes: int | None = None) -> np.ndarray:
    """The original preprocessing's route: FFmpeg's resampler and mono mix to 16-bit samples
    at `sr` (the samples `ffmpeg -i IN -ar SR -ac 1 OUT.wav` writes), as float32 (1, n) =
    s16 / 32768. Needs PyAV (FFmpeg's libraries)."""
    try:
        import av  # noqa: F401
    except ImportError:
        raise UnravelError(f"{path}: the 16-bit route reads through FFmpeg: {AV_EXTRA_HINT}") from None
    path = input_file(path)
    cap = max_bytes or limits.audio_budget()
    x, _ = _read_with_av(path, "FFmpeg cannot read it", cap, "s16", "mono", int(sr))
    return x / np.float32(32768)


RESAMPLERS = ("sinc", "poly")


def resample(audio: np.ndarray, sr_in: int, sr_out: int, method: str = "sinc") -> np.ndarray:
    """Resample (channels, n) audio from sr_in to sr_out, float32.

    sinc: torchaudio's default windowed-sinc kernel (unravel.resample), as the original
    UnRAVEl and RAVE-Latent-Diffusion resample; ceil(n * sr_out / sr_in) samples.
    poly: scipy's polyphase filter (a longer Kaiser-windowed filter), the rate ratio
    approximated by a fraction with denominator <= 1000 (exact for the usual rates), so any
    pair of rates stays cheap; round(n * sr_out / sr_in) samples.
    """
    if sr_in <= 0 or sr_out <= 0:
        raise UnravelError(f"resample: bad sample rates {sr_in} -> {sr_out}")
    if method not in RESAMPLERS:
        raise UnravelError(f"resample: unknown resampler {method!r} (one of {', '.join(RESAMPLERS)})")
    if sr_in == sr_out:
        return audio.astype(np.float32, copy=False)
    if method == "sinc":
        from unravel.resample import resample_sinc
        return resample_sinc(audio, int(sr_in), int(sr_out))
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


def load(path: str | os.PathLike, sr: int, channels: int, resampler: str = "sinc",
         max_bytes: int | None = None) -> np.ndarray:
    """Read an audio file (at most `max_bytes` of samples: see read) resampled to `sr` with
    `resampler` and mixed to `channels`: float32 (channels, n)."""
    return conform(*read(path, max_bytes), sr, channels, resampler)


def conform(audio: np.ndarray, sr_in: int, sr: int, channels: int,
            resampler: str = "sinc") -> np.ndarray:
    """(c, n) audio at `sr_in` resampled to `sr` (`resampler`: see resample) and mixed to
    `channels` (as `load` reads)."""
    return mix(resample(audio, sr_in, sr, resampler), channels)


SUBTYPES = {"float": "FLOAT", "pcm16": "PCM_16"}   # --subtype -> libsndfile's name


def write(path: str | os.PathLike, audio: np.ndarray, sr: int, subtype: str = "FLOAT",
          force: bool = False) -> Path:
    """Write (channels, n) audio as a wav file (temporary name, then rename)."""
    return safewrite.write_file(path, wav_writer(audio, sr, subtype), force=force)


def wav_writer(audio: np.ndarray, sr: int, subtype: str = "FLOAT") -> Callable[[str], None]:
    """A writer (for safewrite.write_file, write_set) of (channels, n) audio as a wav file.

    FLOAT (32-bit) and DOUBLE (64-bit) files hold only the samples (no time-stamped PEAK
    chunk), so the same audio always gives the same bytes; other subtypes go through
    libsndfile.
    """
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None]
    if subtype in ("FLOAT", "DOUBLE"):
        dtype = "<f4" if subtype == "FLOAT" else "<f8"
        return lambda tmp: write_float_wav(tmp, audio, int(sr), dtype)
    return lambda tmp: sf.write(tmp, audio.T, int(sr), subtype=subtype, format="WAV")


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


BUNDLED_LOOP = Path(__file__).resolve().parent / "data" / "loop.wav"


def bundled(item: str | os.PathLike) -> str | os.PathLike:
    """An input as given, except `loop` (when no file or folder of that name is here): the
    bundled 8 s, 180 BPM loop, as the model `default` names the bundled model."""
    return BUNDLED_LOOP if os.fspath(item) == "loop" and not os.path.lexists(item) else item


def scan_audio(inputs: Sequence[str | os.PathLike],
               extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[tuple[Path, str]]:
    """Audio files and the names their outputs take: a file given, or found at the top of a
    given folder, is named by its stem; one found in a subfolder by its folders and stem
    joined with `--` (`drums/kick/a.wav` -> `drums--kick--a`). Folders are scanned
    recursively in sorted order for names ending in one of `extensions` (any case; hidden
    files and folders skipped). `loop` is the bundled loop (`bundled`)."""
    exts = tuple("." + e.lower().lstrip(".") for e in extensions)
    if not exts:
        raise UnravelError("no file extensions given")
    named: dict[Path, str] = {}

    def folder_files(folder: Path) -> list[Path]:
        found = []
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = Path(root).relative_to(folder).parts
            for f in sorted(files):
                if not f.startswith(".") and f.lower().endswith(exts):
                    p = Path(root) / f
                    named[p] = "--".join([*rel, p.stem])
                    found.append(p)
        return found

    files = expand_inputs([bundled(i) for i in inputs], folder_files,
                          f"folder has no audio files ({' '.join(exts)})", "no input files given")
    unique = {p.resolve(): p for p in reversed(files)}      # a file given twice counts once
    return [(p, named.get(p, p.stem)) for p in files if unique[p.resolve()] is p]


def unique_names(found: Sequence[tuple[Path, str]]) -> list[str]:
    """The names of `scan_audio`'s files made unique: a name an earlier file already has
    gets the file's folders put in front, nearest first, until it is free
    (`a/x.wav`, `b/x.wav` -> `x`, `b--x`), then its extension (`x.wav`, `x.flac` -> `x`,
    `x-flac`)."""
    taken: set[str] = set()
    out = []
    for path, name in found:
        folders = path.resolve().parent.parts[1:]
        candidate, k = name, 0
        while candidate in taken and k < len(folders):
            k += 1
            candidate = "--".join([*folders[-k:], name])
        if candidate in taken:
            candidate = f"{name}-{path.suffix.lstrip('.').lower()}"
        n = 1
        while candidate in taken:
            n += 1
            candidate = f"{name}-{n}"
        taken.add(candidate)
        out.append(candidate)
    return out


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


def check_name(name: str, what: str = "name") -> str:
    """`name` if it is a plain file name (stem) that stays in its folder: not empty, no
    `/` or `\\`, not `.` or `..`, no NUL; else UnravelError naming `what`."""
    name = str(name)
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise UnravelError(f"{what} {name!r}: must be a plain file name (no '/', no '..'), it may "
                           f"not leave its folder")
    return name


def free_name(folder: Path, stem: str, suffixes: Iterable[str]) -> str:
    """The first stem of the form `<stem>-NNN` for which no `<stem>-NNN<suffix>` exists."""
    suffixes = list(suffixes)
    i = 1
    while True:
        name = f"{stem}-{i:03d}"
        if not any((folder / (name + s)).exists() for s in suffixes):
            return name
        i += 1

