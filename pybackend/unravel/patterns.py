"""Patterns: arrange blocks of latent points (arrays of shape (points, dims)) in time.

Every random choice comes from the numpy Generator passed in, so a pattern is the same
for the same seed.
"""

from __future__ import annotations

import numpy as np

from unravel import limits
from unravel.errors import UnravelError

PATTERNS = ("fibo", "orale", "blender", "swapper", "default")
# Patterns that combine two blocks A and B.
TWO_BLOCK_PATTERNS = ("blender", "swapper")
# Points for a full Fibonacci run 1, 2, ..., 55 (UnRAVEl's generator refuses fewer).
FIBO_FULL_RUN = 55
# Longest pattern made (about 26 hours of latent frames at 21.5 frames/s).


def fibonacci(limit: int) -> list[int]:
    """Fibonacci numbers 1, 2, 3, 5, 8, ... not above `limit`."""
    out, a, b = [], 1, 2
    while a <= limit:
        out.append(a)
        a, b = b, a + b
    return out


def default(x: np.ndarray, repeat: int = 1) -> np.ndarray:
    """The block tiled `repeat` times."""
    return np.tile(x, (repeat, 1))


def fibo(x: np.ndarray, repeat: int = 1) -> np.ndarray:
    """x[0:1], x[0:2], x[0:3], x[0:5], x[0:8], ... (Fibonacci lengths up to len(x)), tiled `repeat` times."""
    seq = np.concatenate([x[:i] for i in fibonacci(len(x))], axis=0)
    return np.tile(seq, (repeat, 1))


def orale(x: np.ndarray, spread: np.ndarray, rng: np.random.Generator,
          repeat: int = 1) -> np.ndarray:
    """3:1 nested at three levels (64 x the block), tiled `repeat` times, as UnRAVEl's generator.

    L1 = [x, x, x, x - u1], L2 = [L1, L1, L1, L1 + u2], L3 = [L2, L2, L2, L2 - u3], where
    each u is one offset per dimension drawn uniformly in (-spread, +spread) of that
    dimension (u1, u2, u3 drawn in that order from `rng`).
    """
    spread = np.asarray(spread, dtype=np.float64)

    def offset() -> np.ndarray:
        return rng.uniform(-spread, spread, size=(1, x.shape[1]))

    level1 = np.concatenate([x, x, x, x - offset()], axis=0)
    level2 = np.concatenate([level1, level1, level1, level1 + offset()], axis=0)
    level3 = np.concatenate([level2, level2, level2, level2 - offset()], axis=0)
    return np.tile(level3.astype(np.float32), (repeat, 1))


def blender(a: np.ndarray, b: np.ndarray, repeat: int = 1) -> np.ndarray:
    """A turned into B one cell at a time, each state repeated `repeat` times.

    States k = 0 .. points*dims: A with its first k cells taken from B, cells ordered
    point by point and, within a point, dimension by dimension (first value of the first
    dimension, then the first value of the second, ...). State 0 is A, the last is B.
    """
    _check_pair(a, b)
    n = a.size
    order = np.arange(n).reshape(a.shape)
    states = np.where(order[None] < np.arange(n + 1)[:, None, None], b[None], a[None])
    states = np.repeat(states, repeat, axis=0)
    return states.reshape(-1, a.shape[1])


def swapper(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
           repeat: int = 1) -> np.ndarray:
    """K states of A (K = points), as UnRAVEl's generator: for each state one cell (point
    rng.integers(K), then dimension rng.integers(D); picked with replacement) is swapped
    between A and B, and A as it now is is written `repeat` times. K * K * repeat rows."""
    _check_pair(a, b)
    a2, b2 = a.astype(np.float32), b.astype(np.float32)
    states = []
    for _ in range(a.shape[0]):
        p = int(rng.integers(0, a.shape[0]))
        d = int(rng.integers(0, a.shape[1]))
        a2[p, d], b2[p, d] = b2[p, d], a2[p, d]
        states.extend([a2.copy()] * repeat)
    return np.concatenate(states, axis=0)


def length(pattern: str, points: int, dims: int, repeat: int = 1) -> int:
    """The number of rows (frames) a pattern makes from blocks of (points, dims)."""
    per = {"default": points, "fibo": sum(fibonacci(points)), "orale": 64 * points,
           "blender": (points * dims + 1) * points, "swapper": points * points}
    if pattern not in per:
        raise UnravelError(f"generate: unknown pattern {pattern!r} (one of {', '.join(PATTERNS)})")
    return per[pattern] * repeat


def check(pattern: str, points: int, dims: int, repeat: int = 1) -> int:
    """The pattern's length in frames; UnravelError for a bad name, repeat < 1 or too long."""
    if repeat < 1:
        raise UnravelError(f"generate: loops must be >= 1, got {repeat}")
    n = length(pattern, points, dims, repeat)
    if n > limits.MAX_LATENT_FRAMES:
        raise UnravelError(f"generate: {pattern} of {points} points x {repeat} loops would make "
                           f"{n} frames (limit {limits.MAX_LATENT_FRAMES}); use fewer points or loops")
    return n


def apply(pattern: str, a: np.ndarray, b: np.ndarray | None, rng: np.random.Generator,
          repeat: int = 1, spread: np.ndarray | None = None) -> np.ndarray:
    """Apply a pattern by name; `b` is needed by blender and swapper, `spread` (one value
    per dimension: the std the points were drawn with) by orale."""
    check(pattern, a.shape[0], a.shape[1], repeat)
    if pattern == "default":
        return default(a, repeat)
    if pattern == "fibo":
        return fibo(a, repeat)
    if pattern == "orale":
        if spread is None:
            raise UnravelError("generate: pattern orale needs the spread of each dimension")
        return orale(a, spread, rng, repeat)
    if pattern in TWO_BLOCK_PATTERNS and b is None:
        raise UnravelError(f"generate: pattern {pattern} needs two blocks")
    if pattern == "blender":
        return blender(a, b, repeat)
    if pattern == "swapper":
        return swapper(a, b, rng, repeat)
    raise UnravelError(f"generate: unknown pattern {pattern!r} (one of {', '.join(PATTERNS)})")


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 2:
        raise UnravelError(f"pattern: blocks must have the same (points, dims) shape, "
                           f"got {a.shape} and {b.shape}")
