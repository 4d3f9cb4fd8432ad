"""Patterns: arrange blocks of latent points (arrays of shape (points, dims)) in time.

Every random choice comes from the numpy Generator passed in, so a pattern is the same
for the same seed.
"""

from __future__ import annotations

import numpy as np

from unravel.errors import UnravelError

PATTERNS = ("fibo", "orale", "blender", "swapper", "default")
# Patterns that combine two blocks A and B.
TWO_BLOCK_PATTERNS = ("blender", "swapper")
# Longest pattern made (about 26 hours of latent frames at 21.5 frames/s).
MAX_FRAMES = 2_000_000


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


def orale(x: np.ndarray, rng: np.random.Generator, repeat: int = 1, alter: float = 0.1,
          scale: np.ndarray | None = None) -> np.ndarray:
    """3:1 at two levels: L1 = [x, x, x, x'], out = [L1, L1, L1, L1'], tiled `repeat` times.

    x' is x plus normal noise of standard deviation alter * scale per dimension (scale
    defaults to each dimension's std over the block, 1 where that is 0); L1' likewise.
    """
    if scale is None:
        scale = x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
    scale = np.asarray(scale, dtype=np.float64)

    def altered(block: np.ndarray) -> np.ndarray:
        noise = rng.normal(0.0, 1.0, size=block.shape) * (alter * scale)
        return (block + noise).astype(x.dtype)

    level1 = np.concatenate([x, x, x, altered(x)], axis=0)
    level2 = np.concatenate([level1, level1, level1, altered(level1)], axis=0)
    return np.tile(level2, (repeat, 1))


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


def swapper(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, repeat: int = 1,
            fraction: float = 0.5) -> np.ndarray:
    """Swap round(fraction * cells) randomly picked cells between A and B; [A', B'] tiled `repeat` times."""
    _check_pair(a, b)
    count = min(a.size, max(1, int(round(fraction * a.size))))
    idx = rng.choice(a.size, size=count, replace=False)
    a2, b2 = a.copy(), b.copy()
    a2.flat[idx] = b.flat[idx]
    b2.flat[idx] = a.flat[idx]
    return np.tile(np.concatenate([a2, b2], axis=0), (repeat, 1))


def length(pattern: str, points: int, dims: int, repeat: int = 1) -> int:
    """The number of rows (frames) a pattern makes from blocks of (points, dims)."""
    per = {"default": points, "fibo": sum(fibonacci(points)), "orale": 16 * points,
           "blender": (points * dims + 1) * points, "swapper": 2 * points}
    if pattern not in per:
        raise UnravelError(f"generate: unknown pattern {pattern!r} (one of {', '.join(PATTERNS)})")
    return per[pattern] * repeat


def check(pattern: str, points: int, dims: int, repeat: int = 1) -> int:
    """The pattern's length in frames; UnravelError for a bad name, repeat < 1 or too long."""
    if repeat < 1:
        raise UnravelError(f"generate: loops must be >= 1, got {repeat}")
    n = length(pattern, points, dims, repeat)
    if n > MAX_FRAMES:
        raise UnravelError(f"generate: {pattern} of {points} points x {repeat} loops would make "
                           f"{n} frames (limit {MAX_FRAMES}); use fewer points or loops")
    return n


def apply(pattern: str, a: np.ndarray, b: np.ndarray | None, rng: np.random.Generator,
          repeat: int = 1, scale: np.ndarray | None = None) -> np.ndarray:
    """Apply a pattern by name; `b` is needed by blender and swapper."""
    check(pattern, a.shape[0], a.shape[1], repeat)
    if pattern == "default":
        return default(a, repeat)
    if pattern == "fibo":
        return fibo(a, repeat)
    if pattern == "orale":
        return orale(a, rng, repeat, scale=scale)
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
