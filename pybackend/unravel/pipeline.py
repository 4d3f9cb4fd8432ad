"""The UnRAVEl pipeline on files: encode audio, latent statistics, generate latents, decode.

The Python API the CLI, the Pd bridge and the web app call. Outputs named after their
inputs (encode, decode) are never overwritten unless `force`; generated files get the
next free number (`<pattern>-<dist>-001`, ...). Every file is written under a temporary
name and renamed; the files of one result (a `.npy`, its latent wav, its sidecar) are
renamed together once all of them are written (safewrite.write_set).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from unravel import audio, distributions, limits, patterns, safewrite, stats, tempo
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
                 written: Callable[[Path], None] | None = None, jobs: int = 1) -> list[Path]:
    """Encode audio files/folders to `<out_dir>/<name>.npy` (float32 (1, D, T)); with
    `latent_wav` also `<name>.latent.wav`. Folders are scanned recursively for `extensions`
    (names: see `audio.scan_audio`). Each file goes to the model at its own length, as
    UnRAVEl's encoder passes it (no padding to whole frames). `written` is called with each
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
    items = [(f, npy, wav if latent_wav else None, force) for f, npy, wav in zip(files, npys, wavs)]
    if jobs > 1:
        made = map_files(model, _encode_one, [item + (False,) for item in items], jobs)
    else:
        made = (_encode_one(model, *item, progress) for item in _progress(items, progress, "encode"))
    for paths in made:
        for p in paths if written else ():
            written(p)
    return npys


def encode_audio(model: "Model", x: np.ndarray, sr: int) -> np.ndarray:
    """(c, n) audio at `sr` -> (D, T) latents, as encode_files encodes a file: resampled to
    the model's rate, mixed to its inputs, at its own length (no padding to whole frames)."""
    _require(model, "encode")
    return model.encode(audio.conform(x, sr, model.sr, model.in_channels), whole_frames=False)


def _encode_one(model: "Model", f: Path, npy: Path, wav: Path | None, force: bool,
                progress: bool) -> list[Path]:
    """Encode one audio file to `npy` (and the latent wav `wav` unless None); returns the
    files written. `progress`: a status line for a long file."""
    x, sr = audio.read(f)
    long = progress and x.shape[1] >= LONG_FILE_SECONDS * sr
    with _working(f"encode {f.name}", x.shape[1] * model.sr // sr // model.ratio, long):
        z = encode_audio(model, x, sr)
    items = [(npy, latent_io.npy_writer(z))]
    if wav is not None:
        items.append((wav, latent_io.wav_writer(z, latent_io.latent_rate(model.sr, model.ratio))))
    return safewrite.write_set(items, force=force)   # the .npy and its latent wav, or neither


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
    frames = patterns.check(pattern, points, dims, loops)
    limits.check_memory(3 * 8 * frames * dims, f"generate: {frames} frames of {dims} dims",
                        "use fewer points or loops")
    return frames


def generate(z: np.ndarray, pattern: str = "default", dist: str = "normal", iqr: bool = False,
             points: int = 11, loops: int = 1, seed: int = 0) -> np.ndarray:
    """Synthetic (D, T') latents from the statistics of (D, T) latents `z`: points drawn
    from `dist`, arranged by `pattern` (all randomness from `seed`); the first file
    generate_files makes with these arguments."""
    check_generate(pattern, dist, points, z.shape[0], loops)
    return _generate(stats.compute(z), pattern, dist, iqr, points, loops, *streams(seed))


def streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The two random streams of a generate run: the points (`default_rng(seed)`, as
    UnRAVEl's generator draws them) and the patterns' own choices (orale's offsets,
    swapper's cells; the original leaves these unseeded). Files continue both streams."""
    if seed < 0:
        raise UnravelError(f"generate: seed must be >= 0, got {seed}")
    return np.random.default_rng(seed), np.random.default_rng([seed, 1])


def _generate(s: stats.Stats, pattern: str, dist: str, iqr: bool, points: int, loops: int,
              rng: np.random.Generator, pattern_rng: np.random.Generator) -> np.ndarray:
    """One generated (D, T') array from the latents' statistics `s`, arguments already
    checked: block A (and B for two-block patterns) drawn from `rng`, then the pattern."""
    a = distributions.sample(s, dist, points, rng, iqr)
    b = distributions.sample(s, dist, points, rng, iqr) if pattern in patterns.TWO_BLOCK_PATTERNS else None
    rows = patterns.apply(pattern, a, b, pattern_rng, loops, spread=s.centre_spread(iqr)[1])
    return np.ascontiguousarray(rows.T, dtype=np.float32)


def generated_outputs(npy: Path) -> list[Path]:
    """The three files generate_files writes for one `.npy` it returns: .npy, .latent.wav, .json."""
    return [npy, npy.with_name(npy.stem + latent_io.LATENT_WAV_SUFFIX), npy.with_suffix(".json")]


def generate_files(latents: Sequence[PathLike], out_dir: PathLike, pattern: str = "default",
                   dist: str = "normal", iqr: bool = False, points: int | None = None,
                   bpm: float | None = None, loops: int = 1, files: int = 1, seed: int = 0,
                   sr: int = 44100, ratio: int = 2048, skip: int = 0,
                   plot: PathLike | None = None, force: bool = False) -> list[Path]:
    """Generate `files` latent sequences from the statistics of `latents`.

    All files come from one random stream per seed (see `streams`), as UnRAVEl's
    generator draws them; `skip` first draws and drops that many files. Each file gets
    `<pattern>-<dist>-NNN.npy`, a latent wav (`.latent.wav`, 64-bit float,
    floor(sr/ratio) Hz) and a `.json` sidecar whose `argv` re-makes it byte for byte
    (`unravel <argv> -o DIR`: `--seed S --skip I --files 1` for file I of the stream).
    `plot`: also write a PNG of the generated arrays (see `plot_generated`); an existing
    one is refused before anything is made unless `force`.
    Returns the `.npy` paths.
    """
    if files < 1:
        raise UnravelError(f"generate: files must be >= 1, got {files}")
    limits.check_range(files, 1, limits.MAX_COUNT, "generate: files")
    limits.check_range(seed, 0, limits.MAX_SEED, "generate: seed")
    if skip < 0:
        raise UnravelError(f"generate: skip must be >= 0, got {skip}")
    if plot is not None and files > limits.MAX_PLOT_FILES:
        raise UnravelError(f"generate: --plot draws at most {limits.MAX_PLOT_FILES} files, got {files}")
    if plot is not None:
        _targets([Path(plot)], force)
    k, bpm_info = resolve_points(points, bpm, sr, ratio)
    paths, arrays = read_latents(latents)
    z = np.concatenate(arrays, axis=1)
    check_generate(pattern, dist, k, z.shape[0], loops)
    rng, pattern_rng = streams(int(seed))
    s = stats.compute(z)
    out = safewrite.check_writable_dir(out_dir)
    rate = latent_io.latent_rate(sr, ratio)
    inputs = [str(p.resolve()) for p in paths]
    sha = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    suffixes = (".npy", latent_io.LATENT_WAV_SUFFIX, ".json")
    written, made = [], []
    for i in range(skip + files):
        g = _generate(s, pattern, dist, iqr, k, loops, rng, pattern_rng)
        if i < skip:
            continue
        argv = (["generate", *inputs, "--pattern", pattern,
                 "--dist", dist] + (["--iqr"] if iqr else [])
                + ["--points", str(k), "--loops", str(loops), "--files", "1",
                   "--seed", str(seed), "--skip", str(i), "--sr", str(sr), "--ratio", str(ratio)])
        name = audio.free_name(out, f"{pattern}-{dist}", suffixes)
        sidecar = {
            "command": "unravel " + shlex.join(argv) + " -o DIR",
            "argv": argv, "inputs": inputs, "inputs_sha256": sha,
            "pattern": pattern, "dist": dist, "iqr": iqr, "points": k, "bpm": bpm_info,
            "loops": loops, "seed": seed, "index": i, "sr": sr, "ratio": ratio,
            "latent_rate": rate, "shape": [1, int(g.shape[0]), int(g.shape[1])],
            "npy": name + ".npy", "latent_wav": name + latent_io.LATENT_WAV_SUFFIX,
            "unravel_version": _version(),
        }
        if pattern == "fibo":
            sidecar["fibo_steps"] = patterns.fibonacci(k)
        npy, _, _ = safewrite.write_set([   # all three or none
            (out / f"{name}.npy", latent_io.npy_writer(g)),
            (out / f"{name}{latent_io.LATENT_WAV_SUFFIX}", latent_io.wav_writer(g, rate)),
            (out / f"{name}.json", latent_io.json_writer(sidecar))])
        written.append(npy)
        made.append(g)
    if plot is not None:
        plot_generated(made, plot, [p.stem for p in written], f"{pattern}, {dist}", force=True)
    return written


def plot_generated(arrays: Sequence[np.ndarray], path: PathLike, names: Sequence[str],
                   title: str = "", force: bool = False) -> Path:
    """Write a PNG with one row per generated (D, T) array: a violin and a box plot per
    dimension and the time series of every dimension (UnRAVEl generator's plots)."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 3.6 * len(arrays)), dpi=80)
    for row, (g, name) in enumerate(zip(arrays, names)):
        x = np.asarray(g, dtype=np.float64).T            # (frames, dims)
        ticks = range(1, x.shape[1] + 1)
        ax = fig.add_subplot(len(arrays), 3, 3 * row + 1)
        ax.violinplot(x, showmeans=True, showmedians=True)
        ax.set_title(f"{name}: distribution (violin)", fontsize=9)
        ax.set_xlabel("latent dimension")
        ax.set_xticks(list(ticks))
        ax = fig.add_subplot(len(arrays), 3, 3 * row + 2)
        ax.boxplot(x, showmeans=True)
        ax.set_title(f"{name}: distribution (box)", fontsize=9)
        ax.set_xlabel("latent dimension")
        ax = fig.add_subplot(len(arrays), 3, 3 * row + 3)
        ax.plot(x, linewidth=0.8)
        ax.set_title(f"{name}: time series", fontsize=9)
        ax.set_xlabel("latent frame")
        for a in fig.axes[-3:]:
            a.grid(True, alpha=0.3)
            a.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return safewrite.write_bytes(path, buf.getvalue(), force=force)


def decode_targets(latents: Sequence[PathLike], out_dir: PathLike,
                   force: bool = False) -> tuple[list[Path], list[Path]]:
    """Check what decode_files would read and write: (latent files, audio paths).
    Raises UnravelError for missing inputs, an unusable output folder or outputs that exist."""
    paths = find_latents(latents)
    out = safewrite.check_writable_dir(out_dir)
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
    for p, z in zip(paths, arrays):
        check_decode(model, z, str(p))
    for z, target in _progress(list(zip(arrays, targets)), progress, "decode"):
        long = progress and z.shape[1] * model.ratio >= LONG_FILE_SECONDS * model.sr
        with _working(f"decode {target.name}", z.shape[1], long):
            y = model.decode(z)
        audio.write(target, y, model.sr, force=force)
    return targets


def check_decode(model: "Model", z: np.ndarray, what: str) -> None:
    """UnravelError naming `what` when the model cannot decode or decoding (D, T) latents
    `z` would not fit in memory."""
    _require(model, "decode")
    limits.check_memory(2 * 4 * z.shape[1] * model.ratio * model.out_channels,
                        f"{what}: decoding {z.shape[1]} frames to {model.out_channels} channels",
                        "split the latents")


def _version() -> str:
    from unravel import __version__
    return __version__
