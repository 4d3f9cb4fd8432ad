"""The latent generator: synthetic latents from the statistics of encodings, as a stream.

A `Stream` draws file after file from one seed, as UnRAVEl's generator does: points from a
distribution, arranged in time by a pattern. It hands them out as whole files or a few
frames at a time, in the same order either way. `generate_files` writes the files of a
stream, each with a sidecar that re-makes it. Every generated file is named after its
pattern and distribution with the next free number (`<pattern>-<dist>-001`, ...); its
three files are renamed together once all of them are written (safewrite.write_set).
"""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path
from typing import Iterator

import numpy as np

from unravel import audio, distributions, limits, patterns, plots, safewrite, stats, tempo
from unravel import latents as latent_io
from unravel.errors import UnravelError
from unravel.operations import GENERATE
from unravel.settings import Settings

PathLike = str | os.PathLike
DEFAULT_BPM = 120.0


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


def streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The two random streams of a generate run: the points (`default_rng(seed)`, as
    UnRAVEl's generator draws them) and the patterns' own choices (orale's offsets,
    swapper's cells; the original leaves these unseeded). Files continue both streams."""
    if seed < 0:
        raise UnravelError(f"generate: seed must be >= 0, got {seed}")
    return np.random.default_rng(seed), np.random.default_rng([seed, 1])


class Stream:
    """Generated latents without end, from the statistics `s`: file after file, as
    `generate_files` makes them with `--files N`.

    Each file is drawn whole (block A, and B for two-block patterns, from the points'
    stream; then the pattern, `loops` times, with its own stream: see `streams`), because a
    pattern spans the whole file. Frames come out in the stream's order however they are
    asked for: `file()` hands out the rest of the current file, `frames(n)` the next n
    frames across file ends; iterating yields `file()` forever.
    """

    def __init__(self, s: stats.Stats, pattern: str = "default", dist: str = "normal",
                 iqr: bool = False, points: int = 11, loops: int = 1, seed: int = 0):
        self.stats, self.pattern, self.dist, self.iqr = s, pattern, dist, iqr
        self.points, self.loops = points, loops
        self.file_frames = check_generate(pattern, dist, points, s.dims, loops)  # frames per file
        self._rng, self._pattern_rng = streams(seed)
        self.files = 0                                   # files drawn, the current one included
        self._file = np.zeros((s.dims, 0), np.float32)   # the current file, (D, file_frames)
        self._pos = 0                                    # its frames handed out so far

    @property
    def dims(self) -> int:
        return self.stats.dims

    def _draw(self) -> None:
        """Make the next file the current one."""
        s = self.stats
        a = distributions.sample(s, self.dist, self.points, self._rng, self.iqr)
        b = (distributions.sample(s, self.dist, self.points, self._rng, self.iqr)
             if self.pattern in patterns.TWO_BLOCK_PATTERNS else None)
        rows = patterns.apply(self.pattern, a, b, self._pattern_rng, self.loops,
                              spread=s.centre_spread(self.iqr)[1])
        self._file = np.ascontiguousarray(rows.T, dtype=np.float32)
        self._pos = 0
        self.files += 1

    def file(self) -> np.ndarray:
        """The frames up to the end of the current file as float32 (D, n): the next whole
        file when all of the current one was handed out."""
        if self._pos == self._file.shape[1]:
            self._draw()
        rest = self._file[:, self._pos:]
        self._pos = self._file.shape[1]
        return rest

    def frames(self, n: int) -> np.ndarray:
        """The next `n` frames as float32 (D, n), drawing files as needed."""
        if n < 0:
            raise UnravelError(f"generate: frames must be >= 0, got {n}")
        limits.check_memory(4 * n * self.dims, f"generate: {n} frames of {self.dims} dims",
                            "ask for fewer frames")
        parts = []
        while n > 0:
            if self._pos == self._file.shape[1]:
                self._draw()
            take = min(n, self._file.shape[1] - self._pos)
            parts.append(self._file[:, self._pos:self._pos + take])
            self._pos += take
            n -= take
        return np.concatenate(parts, axis=1) if parts else np.zeros((self.dims, 0), np.float32)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.file()


def generate(z: np.ndarray, pattern: str = "default", dist: str = "normal", iqr: bool = False,
             points: int = 11, loops: int = 1, seed: int = 0, float32: bool = False) -> np.ndarray:
    """Synthetic (D, T') latents from the statistics of (D, T) latents `z` (in float32 with
    `float32`, see stats.compute): points drawn from `dist`, arranged by `pattern` (all
    randomness from `seed`); the first file generate_files makes with these arguments."""
    check_generate(pattern, dist, points, z.shape[0], loops)   # before the statistics of z
    return Stream(stats.compute(z, float32), pattern, dist, iqr, points, loops, seed).file()


def generated_outputs(npy: Path) -> list[Path]:
    """The three files generate_files writes for one `.npy` it returns: .npy, .latent.wav, .json."""
    return [npy, npy.with_name(npy.stem + latent_io.LATENT_WAV_SUFFIX), npy.with_suffix(".json")]


def generate_files(s: Settings) -> list[Path]:
    """Generate `s.files` latent sequences from the statistics of the latent files `s.inputs`
    into the folder `s.output` (settings of `operations.GENERATE`; `sr` and `ratio` set the
    tempo grid and the latent wav's rate).

    All files come from one random stream per seed (see `Stream`), as UnRAVEl's
    generator draws them; `skip` first draws and drops that many files. Each file gets
    `<pattern>-<dist>-NNN.npy`, a latent wav (`.latent.wav`, 64-bit float or `latent_subtype`,
    floor(sr/ratio) Hz) and a `.json` sidecar whose `argv` re-makes it byte for byte
    (`unravel <argv> -o DIR`: `--seed S --skip I --files 1` for file I of the stream).
    `plot`: also write a PNG of the generated arrays (see `plots.generated`); an existing
    one is refused before anything is made unless `force`.
    Returns the `.npy` paths.
    """
    pattern, dist, iqr, loops, seed, sr, ratio = s.pattern, s.dist, s.iqr, s.loops, s.seed, s.sr, s.ratio
    if s.plot is not None and s.files > limits.MAX_PLOT_FILES:
        raise UnravelError(f"generate: --plot draws at most {limits.MAX_PLOT_FILES} files, got {s.files}")
    if s.plot is not None and Path(s.plot).exists() and not s.force:
        raise UnravelError(f"{Path(s.plot)}: already exists (use --force to overwrite)")
    k, bpm_info = resolve_points(s.points, s.bpm, sr, ratio)
    read = stats.read(s.inputs, s.float32)
    stream = Stream(read.stats, pattern, dist, iqr, k, loops, int(seed))
    out = safewrite.check_writable_dir(s.output or ".")
    rate = latent_io.latent_rate(sr, ratio)
    inputs = [str(p.resolve()) for p in read.paths]
    sha = [hashlib.sha256(p.read_bytes()).hexdigest() for p in read.paths]
    suffixes = (".npy", latent_io.LATENT_WAV_SUFFIX, ".json")
    for _ in range(s.skip):
        stream.file()
    written, made = [], []
    for _ in range(s.files):
        g = stream.file()
        i = stream.files - 1    # its index in the stream
        one = GENERATE.settings(inputs=inputs, pattern=pattern, dist=dist, iqr=iqr, points=k,
                                loops=loops, files=1, seed=seed, skip=i, sr=sr, ratio=ratio,
                                float32=s.float32, **({"latent_subtype": s.latent_subtype}
                                                      if s.latent_subtype != "double" else {}))
        argv = GENERATE.argv(one, also=("pattern", "dist", "points", "loops", "files", "seed",
                                        "skip", "sr", "ratio"))
        name = audio.free_name(out, f"{pattern}-{dist}", suffixes)
        sidecar = {
            "command": "unravel " + shlex.join(argv) + " -o DIR",
            "argv": argv, "inputs": inputs, "inputs_sha256": sha,
            "pattern": pattern, "dist": dist, "iqr": iqr, "points": k, "bpm": bpm_info,
            "loops": loops, "seed": seed, "float32": s.float32, "index": i, "sr": sr, "ratio": ratio,
            "latent_rate": rate, "shape": [1, int(g.shape[0]), int(g.shape[1])],
            "npy": name + ".npy", "latent_wav": name + latent_io.LATENT_WAV_SUFFIX,
            "unravel_version": _version(),
        }
        if pattern == "fibo":
            sidecar["fibo_steps"] = patterns.fibonacci(k)
        npy, _, _ = safewrite.write_set([   # all three or none
            (out / f"{name}.npy", latent_io.npy_writer(g)),
            (out / f"{name}{latent_io.LATENT_WAV_SUFFIX}",
             latent_io.wav_writer(g, rate, latent_io.SUBTYPES[s.latent_subtype])),
            (out / f"{name}.json", latent_io.json_writer(sidecar))])
        written.append(npy)
        made.append(g)
    if s.plot is not None:
        plots.generated(made, s.plot, [p.stem for p in written], f"{pattern}, {dist}", force=True)
    return written


def _version() -> str:
    from unravel import __version__
    return __version__
