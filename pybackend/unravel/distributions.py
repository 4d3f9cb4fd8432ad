"""Synthetic latent points drawn from the statistics of real encodings."""

from __future__ import annotations

import numpy as np

from unravel.errors import UnravelError
from unravel.stats import Stats

DISTRIBUTIONS = ("normal", "uniform", "iqr-uniform", "correlation")


def sample(stats: Stats, dist: str, points: int, rng: np.random.Generator,
           iqr: bool = False) -> np.ndarray:
    """Draw `points` latent points, float32 of shape (points, D).

    normal: N(centre, spread); uniform: U(centre - 3 spread, centre + 3 spread);
    iqr-uniform: U(Q1 - 1.5 IQR, Q3 + 1.5 IQR); correlation: a multivariate normal with
    the covariance (repaired if not positive semidefinite). centre/spread are mean/std,
    or with `iqr` (Q1+Q3)/2 and IQR/1.35.
    """
    if points < 1:
        raise UnravelError(f"generate: points must be >= 1, got {points}")
    centre, spread = stats.centre_spread(iqr)
    d = stats.dims
    if dist == "normal":
        x = rng.normal(centre, spread, size=(points, d))
    elif dist == "uniform":
        x = rng.uniform(centre - 3 * spread, centre + 3 * spread, size=(points, d))
    elif dist == "iqr-uniform":
        x = rng.uniform(stats.lower, stats.upper, size=(points, d))
    elif dist == "correlation":
        x = multivariate_normal(centre, stats.covariance(iqr), points, rng)
    else:
        raise UnravelError(f"generate: unknown distribution {dist!r} "
                           f"(one of {', '.join(DISTRIBUTIONS)})")
    return x.astype(np.float32)


def nearest_psd(cov: np.ndarray) -> np.ndarray:
    """The symmetric positive semidefinite matrix nearest to `cov` (negative eigenvalues -> 0)."""
    w, v = _psd_eig(cov)
    return (v * w) @ v.T


def multivariate_normal(mean: np.ndarray, cov: np.ndarray, points: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Draw (points, D) from N(mean, cov); a non-PSD `cov` is repaired by eigenvalue clipping."""
    w, v = _psd_eig(cov)
    factor = v * np.sqrt(w)          # factor @ factor.T == nearest_psd(cov)
    z = rng.standard_normal((points, len(mean)))
    return np.asarray(mean, dtype=np.float64) + z @ factor.T


def _psd_eig(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (negative ones set to 0) and eigenvectors of `cov` made finite and symmetric."""
    a = np.nan_to_num(np.asarray(cov, dtype=np.float64))
    a = (a + a.T) / 2
    w, v = np.linalg.eigh(a)
    return np.clip(w, 0, None), v
