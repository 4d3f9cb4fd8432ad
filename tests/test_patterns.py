"""unravel.patterns: each pattern's structure checked exactly; seeded randomness."""

from __future__ import annotations

import numpy as np
import pytest

from unravel import patterns
from unravel.errors import UnravelError


def block(points: int, dims: int, offset: float = 0.0) -> np.ndarray:
    """Distinct values: cell (p, d) = offset + 100 p + d."""
    return (offset + 100 * np.arange(points)[:, None] + np.arange(dims)[None]).astype(np.float32)


def test_fibonacci():
    assert patterns.fibonacci(1) == [1]
    assert patterns.fibonacci(12) == [1, 2, 3, 5, 8]
    assert patterns.fibonacci(13) == [1, 2, 3, 5, 8, 13]


@pytest.mark.parametrize("points", [1, 5, 11, 13])
def test_fibo_rows(points):
    x = block(points, 3)
    y = patterns.fibo(x, repeat=2)
    lengths = patterns.fibonacci(points)
    assert y.shape == (2 * sum(lengths), 3)
    pos = 0
    for _ in range(2):
        for i in lengths:
            np.testing.assert_array_equal(y[pos:pos + i], x[:i])
            pos += i


def test_default_tiles():
    x = block(4, 2)
    np.testing.assert_array_equal(patterns.default(x, 3), np.concatenate([x, x, x]))


def test_orale_structure():
    x = block(4, 3)
    y = patterns.orale(x, np.random.default_rng(0), repeat=2, alter=0.1, scale=np.ones(3))
    p = 4
    assert y.shape == (2 * 16 * p, 3)
    level1 = y[:4 * p]
    for i in range(3):
        np.testing.assert_array_equal(level1[i * p:(i + 1) * p], x)
    altered = level1[3 * p:]
    diff = altered - x
    assert np.all(diff != 0) and np.abs(diff).max() < 0.6  # 0.1 * scale noise: slight
    for i in range(3):
        np.testing.assert_array_equal(y[i * 4 * p:(i + 1) * 4 * p], level1)
    diff2 = y[12 * p:16 * p] - level1
    assert np.all(diff2 != 0) and np.abs(diff2).max() < 0.6
    np.testing.assert_array_equal(y[16 * p:], y[:16 * p])  # repeat


def test_orale_seeded():
    x = block(5, 2)
    a = patterns.orale(x, np.random.default_rng(7))
    b = patterns.orale(x, np.random.default_rng(7))
    c = patterns.orale(x, np.random.default_rng(8))
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    # default scale: each dimension's own spread
    assert np.abs(a[3 * 5:4 * 5] - x).max() < 0.6 * x.std(0).max()


def test_blender_order():
    a, b = block(2, 3), block(2, 3, offset=1000)
    y = patterns.blender(a, b, repeat=2)
    n = a.size
    assert y.shape == ((n + 1) * 2 * 2, 3)
    states = y.reshape(n + 1, 2, 2, 3)
    order = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]  # first of dim 0, first of dim 1, ...
    for k in range(n + 1):
        expect = a.copy()
        for (p, d) in order[:k]:
            expect[p, d] = b[p, d]
        np.testing.assert_array_equal(states[k, 0], expect)
        np.testing.assert_array_equal(states[k, 1], expect)  # each state repeated
    np.testing.assert_array_equal(states[0, 0], a)
    np.testing.assert_array_equal(states[-1, 0], b)


def test_swapper():
    a, b = block(4, 3), block(4, 3, offset=1000)
    y = patterns.swapper(a, b, np.random.default_rng(1), repeat=3, fraction=0.5)
    assert y.shape == (3 * 8, 3)
    np.testing.assert_array_equal(y[:8], y[8:16])
    a2, b2 = y[:4], y[4:8]
    swapped = a2 != a
    assert swapped.sum() == 6
    np.testing.assert_array_equal(a2[swapped], b[swapped])
    np.testing.assert_array_equal(b2[swapped], a[swapped])
    np.testing.assert_array_equal(a2[~swapped], a[~swapped])
    np.testing.assert_array_equal(b2[~swapped], b[~swapped])


def test_swapper_seeded():
    a, b = block(6, 4), block(6, 4, offset=1000)
    runs = [patterns.swapper(a, b, np.random.default_rng(s)).tobytes() for s in (5, 5, 6)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_apply():
    a, b = block(3, 2), block(3, 2, offset=50)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(patterns.apply("fibo", a, None, rng), patterns.fibo(a))
    np.testing.assert_array_equal(patterns.apply("blender", a, b, rng, 2), patterns.blender(a, b, 2))
    with pytest.raises(UnravelError, match="unknown pattern"):
        patterns.apply("spiral", a, b, rng)
    with pytest.raises(UnravelError, match="needs two blocks"):
        patterns.apply("swapper", a, None, rng)
    with pytest.raises(UnravelError, match="loops must be >= 1"):
        patterns.apply("default", a, None, rng, 0)
    with pytest.raises(UnravelError, match="same"):
        patterns.blender(a, block(4, 2))


@pytest.mark.parametrize("pattern", patterns.PATTERNS)
def test_length_matches(pattern):
    a, b = block(6, 3), block(6, 3, offset=50)
    y = patterns.apply(pattern, a, b, np.random.default_rng(0), repeat=3)
    assert y.shape == (patterns.length(pattern, 6, 3, 3), 3)


def test_too_long_refused():
    with pytest.raises(UnravelError, match="blender of 1000 points x 1 loops would make"):
        patterns.check("blender", 1000, 16)
    with pytest.raises(UnravelError, match="limit"):
        patterns.apply("default", block(10, 2), None, np.random.default_rng(0), repeat=10 ** 6)
