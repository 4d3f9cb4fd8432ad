"""Per-dimension statistics of latent sequences, and their histogram plot."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unravel.errors import UnravelError

# IQR of a normal distribution in units of its standard deviation (2 * 0.6745).
IQR_PER_STD = 1.35


@dataclass(frozen=True)
class Stats:
    """Statistics of latents with D dims over T frames (each field float64, shape (D,) or (D, D))."""
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


def compute(z: np.ndarray) -> Stats:
    """Statistics of (D, T) latents over time (population std and covariance)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise UnravelError(f"stats: latents must have shape (D, T) with T > 0, got {z.shape}")
    q1, median, q3 = np.percentile(z, [25, 50, 75], axis=1)
    cov = np.atleast_2d(np.cov(z, bias=True))
    std = z.std(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(std, std)
    constant = std == 0
    corr[constant, :] = 0.0
    corr[:, constant] = 0.0
    np.fill_diagonal(corr, 1.0)
    corr = np.clip(corr, -1.0, 1.0)
    return Stats(frames=int(z.shape[1]), mean=z.mean(axis=1), std=std, min=z.min(axis=1),
                 max=z.max(axis=1), q1=q1, median=median, q3=q3, cov=cov, corr=corr)


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


def plot(z: np.ndarray, path: str | os.PathLike, title: str = "", force: bool = False) -> Path:
    """Write a PNG with one histogram per latent dimension of (D, T) latents (at most
    limits.MAX_PLOT_DIMS dimensions: more would take minutes and make an unreadable picture)."""
    from unravel import limits
    if np.shape(z)[0] > limits.MAX_PLOT_DIMS:
        raise UnravelError(f"{path}: a plot shows at most {limits.MAX_PLOT_DIMS} dims, these latents "
                           f"have {np.shape(z)[0]}")
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from unravel.safewrite import write_bytes

    z = np.asarray(z, dtype=np.float64)
    dims = z.shape[0]
    cols = min(4, dims)
    rows = -(-dims // cols)
    fig = Figure(figsize=(3 * cols, 2.4 * rows), dpi=100)
    bins = max(10, min(60, int(np.sqrt(z.shape[1])) * 2))
    for d in range(dims):
        ax = fig.add_subplot(rows, cols, d + 1)
        ax.hist(z[d], bins=bins, color="tab:blue", alpha=0.8)
        ax.set_title(f"dim {d}", fontsize=9)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_bytes(path, buf.getvalue(), force=force)
