"""Per-dimension statistics of latent sequences, and of latent files read together."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from unravel import latents
from unravel.errors import UnravelError

# IQR of a normal distribution in units of its standard deviation (2 * 0.6745).
IQR_PER_STD = 1.35


@dataclass(frozen=True)
class Stats:
    """Statistics of latents with D dims over T frames (each field shape (D,) or (D, D),
    float64; computed in float32 (`compute`), the per-dimension fields are float32)."""
    frames: int
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    q1: np.ndarray
    median: np.ndarray
    q3: np.ndarray
    cov: np.ndarray
    corr: np.ndarray

    @property
    def dims(self) -> int:
        return int(self.mean.shape[0])

    @property
    def iqr(self) -> np.ndarray:
        return self.q3 - self.q1

    @property
    def iqr_centre(self) -> np.ndarray:
        """(Q1 + Q3) / 2."""
        return (self.q1 + self.q3) / 2

    @property
    def iqr_spread(self) -> np.ndarray:
        """IQR / 1.35: the standard deviation of a normal with this IQR."""
        return self.iqr / IQR_PER_STD

    @property
    def lower(self) -> np.ndarray:
        """Q1 - 1.5 IQR."""
        return self.q1 - 1.5 * self.iqr

    @property
    def upper(self) -> np.ndarray:
        """Q3 + 1.5 IQR."""
        return self.q3 + 1.5 * self.iqr

    def centre_spread(self, iqr: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), or in IQR mode (centre, spread)."""
        return (self.iqr_centre, self.iqr_spread) if iqr else (self.mean, self.std)

    def covariance(self, iqr: bool = False) -> np.ndarray:
        """The covariance, or in IQR mode the correlation scaled by the IQR spreads."""
        if not iqr:
            return self.cov
        s = self.iqr_spread
        return self.corr * np.outer(s, s)

    def to_dict(self, iqr: bool = False) -> dict:
        """JSON-able dict: per-dimension lists, covariance and correlation as nested lists."""
        d = {"dims": self.dims, "frames": self.frames,
             "mean": self.mean, "std": self.std, "min": self.min, "max": self.max,
             "q1": self.q1, "median": self.median, "q3": self.q3, "iqr": self.iqr,
             "covariance": self.cov, "correlation": self.corr}
        if iqr:
            d.update(iqr_centre=self.iqr_centre, iqr_spread=self.iqr_spread,
                     iqr_lower=self.lower, iqr_upper=self.upper)
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def compute(z: np.ndarray, float32: bool = False) -> Stats:
    """Statistics of (D, T) latents over time (population std and covariance), in float64;
    with `float32` as UnRAVEl's generator computes them: numpy on the float32 latents (mean,
    std, each quartile, float32), the correlation numpy's `corrcoef` and the covariance
    outer(std, std) times it (float64), so a seed draws the original's numbers bit for bit.
    A constant dimension has correlation 0 with the others (1 with itself) either way."""
    z = np.asarray(z, dtype=np.float32 if float32 else np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise UnravelError(f"stats: latents must have shape (D, T) with T > 0, got {z.shape}")
    std = z.std(axis=1)
    constant = std == 0
    if float32:
        q1, median, q3 = (np.percentile(z, q, axis=1) for q in (25, 50, 75))  # float32 each
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.atleast_2d(np.corrcoef(z))
        corr[constant, :] = 0.0
        corr[:, constant] = 0.0
        corr[constant, constant] = 1.0
        cov = np.outer(std, std) * corr
    else:
        q1, median, q3 = np.percentile(z, [25, 50, 75], axis=1)
        cov = np.atleast_2d(np.cov(z, bias=True))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = cov / np.outer(std, std)
        corr[constant, :] = 0.0
        corr[:, constant] = 0.0
        np.fill_diagonal(corr, 1.0)
        corr = np.clip(corr, -1.0, 1.0)
    return Stats(frames=int(z.shape[1]), mean=z.mean(axis=1), std=std, min=z.min(axis=1),
                 max=z.max(axis=1), q1=q1, median=median, q3=q3, cov=cov, corr=corr)


@dataclass(frozen=True)
class FileStats:
    """Latent files read together: their paths, all their frames and the statistics of these."""
    paths: list[Path]
    z: np.ndarray      # (D, T): the frames of every file, one file after the other
    stats: Stats

    @property
    def title(self) -> str:
        """What a picture of them is called: the file's name, or how many files."""
        return self.paths[0].name if len(self.paths) == 1 else f"{len(self.paths)} files"

    def to_dict(self, iqr: bool = False) -> dict:
        """JSON-able: {"files": [...], then Stats.to_dict}."""
        return {"files": [str(p) for p in self.paths], **self.stats.to_dict(iqr)}


def read(inputs: Sequence[str | os.PathLike], float32: bool = False) -> FileStats:
    """Read latent files (folders expanded, all of the same dims: `latents.read_files`) and
    compute the statistics of all their frames taken together (`float32`: see compute)."""
    paths, arrays = latents.read_files(inputs)
    z = np.concatenate(arrays, axis=1)
    return FileStats(paths, z, compute(z, float32))


def format_table(stats: Stats, iqr: bool = False) -> str:
    """A plain-text table, one row per dimension."""
    cols = ["mean", "std", "min", "max", "q1", "median", "q3", "iqr"]
    if iqr:
        cols += ["centre", "spread", "lower", "upper"]
    values = {"mean": stats.mean, "std": stats.std, "min": stats.min, "max": stats.max,
              "q1": stats.q1, "median": stats.median, "q3": stats.q3, "iqr": stats.iqr,
              "centre": stats.iqr_centre, "spread": stats.iqr_spread,
              "lower": stats.lower, "upper": stats.upper}
    lines = [f"{stats.dims} dims, {stats.frames} frames",
             "dim " + "".join(f"{c:>10}" for c in cols)]
    for d in range(stats.dims):
        lines.append(f"{d:>3} " + "".join(f"{values[c][d]:>10.4f}" for c in cols))
    lines.append("correlation:")
    for row in stats.corr:
        lines.append("    " + "".join(f"{v:>7.3f}" for v in row))
    return "\n".join(lines)

