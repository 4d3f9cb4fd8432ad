"""Pictures of latents as PNG files: histograms of their statistics, plots of generated files,
latents as an image. matplotlib is imported when a picture is drawn."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from unravel import limits
from unravel import safewrite
from unravel.errors import UnravelError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PathLike = str | os.PathLike
# `generate --plot` draws at most this many files (one row each).


def _figure(**kw) -> "Figure":
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    return Figure(**kw)


def _save(fig: "Figure", path: PathLike, force: bool) -> Path:
    """Write the figure to `path` as PNG (refused if it exists, unless `force`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return safewrite.write_bytes(path, buf.getvalue(), force=force)


def histograms(z: np.ndarray, path: PathLike, title: str = "", force: bool = False) -> Path:
    """Write a PNG with one histogram per latent dimension of (D, T) latents (at most
    limits.MAX_PLOT_DIMS dimensions: more would take minutes and make an unreadable picture)."""
    if np.shape(z)[0] > limits.MAX_PLOT_DIMS:
        raise UnravelError(f"{path}: a plot shows at most {limits.MAX_PLOT_DIMS} dims, these latents "
                           f"have {np.shape(z)[0]}")
    z = np.asarray(z, dtype=np.float64)
    dims = z.shape[0]
    cols = min(4, dims)
    rows = -(-dims // cols)
    fig = _figure(figsize=(3 * cols, 2.4 * rows), dpi=100)
    bins = max(10, min(60, int(np.sqrt(z.shape[1])) * 2))
    for d in range(dims):
        ax = fig.add_subplot(rows, cols, d + 1)
        ax.hist(z[d], bins=bins, color="tab:blue", alpha=0.8)
        ax.set_title(f"dim {d}", fontsize=9)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path, force)


def generated(arrays: Sequence[np.ndarray], path: PathLike, names: Sequence[str],
              title: str = "", force: bool = False) -> Path:
    """Write a PNG with one row per generated (D, T) array: a violin and a box plot per
    dimension and the time series of every dimension (UnRAVEl generator's plots)."""
    fig = _figure(figsize=(15, 3.6 * len(arrays)), dpi=80)
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
    return _save(fig, path, force)


def latents_image(z: np.ndarray, path: PathLike) -> Path:
    """Write a PNG of (D, T) latents as an image: dims down, time across (replaces `path`)."""
    z = np.asarray(z, dtype=np.float32)
    fig = _figure(figsize=(8, 1.2 + 0.22 * z.shape[0]), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    lim = float(np.max(np.abs(z))) or 1.0
    im = ax.imshow(z, aspect="auto", interpolation="nearest", cmap="magma",
                   vmin=-lim, vmax=lim, origin="upper")
    ax.set_xlabel(f"latent frame ({z.shape[1]} frames x {z.shape[0]} dims)")
    ax.set_ylabel("dim")
    ax.set_yticks(range(z.shape[0]))
    ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=ax, pad=0.01)
    fig.tight_layout(rect=(0, 0, 1, 0.9))   # room for the page's label above
    return _save(fig, path, force=True)
