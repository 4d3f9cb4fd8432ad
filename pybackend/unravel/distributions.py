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


def is_psd(cov: np.ndarray) -> bool:
    """True when `cov` is finite, symmetric and has no eigenvalue below -1e-12 (UnRAVEl's test)."""
    a = np.asarray(cov, dtype=np.float64)
    if not np.all(np.isfinite(a)) or not np.allclose(a, a.T):
        return False
    return bool(np.all(np.linalg.eigvalsh(a) >= -1e-12))


def multivariate_normal(mean: np.ndarray, cov: np.ndarray, points: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Draw (points, D) from N(mean, cov) with numpy's own `multivariate_normal` (its SVD
    method), so a seed gives the numbers UnRAVEl's generator gives; a `cov` that is not
    positive semidefinite is first repaired by eigenvalue clipping (`nearest_psd`)."""
    cov = np.asarray(cov, dtype=np.float64)
    if not is_psd(cov):
        cov = nearest_psd(cov)
    return rng.multivariate_normal(np.asarray(mean, dtype=np.float64), cov, size=points,
                                   check_valid="ignore")


def _psd_eig(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (negative ones set to 0) and eigenvectors of `cov` made finite and symmetric."""
    a = np.nan_to_num(np.asarray(cov, dtype=np.float64))
    a = (a + a.T) / 2
    w, v = np.linalg.eigh(a)
    return np.clip(w, 0, None), v
