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


class Scripted:
    """Stands in for np.random.Generator: returns the draws written in the test, in order."""

    def __init__(self, uniforms=(), integers=()):
        self.uniforms, self.integers_ = list(uniforms), list(integers)
        self.calls = []

    def uniform(self, low, high, size):
        self.calls.append(("uniform", np.asarray(low).tolist(), np.asarray(high).tolist(), size))
        return np.array(self.uniforms.pop(0), dtype=np.float64).reshape(size)

    def integers(self, low, high):
        self.calls.append(("integers", low, high))
        return self.integers_.pop(0)


def test_orale_by_hand():
    # one point of two dims, spreads 0.5 and 2; offsets u1, u2, u3 as drawn
    x = np.array([[1.0, 10.0]], np.float32)
    rng = Scripted(uniforms=[[0.25, -1.0], [0.5, 2.0], [-0.125, 0.5]])
    y = patterns.orale(x, np.array([0.5, 2.0]), rng, repeat=2)
    assert rng.calls == [("uniform", [-0.5, -2.0], [0.5, 2.0], (1, 2))] * 3
    a, a1 = [1, 10], [0.75, 11]                # x, x - u1
    b, b1 = [1.5, 12], [1.25, 13]              # level 1 + u2
    c, c1, d, d1 = [1.125, 9.5], [0.875, 10.5], [1.625, 11.5], [1.375, 12.5]  # level 2 - u3
    level1 = [a, a, a, a1]
    level2 = level1 * 3 + [b, b, b, b1]
    level3 = level2 * 3 + [c, c, c, c1] * 3 + [d, d, d, d1]
    assert len(level3) == 64
    np.testing.assert_array_equal(y, np.array(level3 * 2, np.float32))
    assert y.dtype == np.float32


def test_orale_draws_from_the_generator():
    x = block(4, 3)
    spread = np.array([0.1, 1.0, 0.0])
    y = patterns.orale(x, spread, np.random.default_rng(7), repeat=2)
    ref = np.random.default_rng(7)
    u1, u2, u3 = (ref.uniform(-spread, spread, size=(1, 3)) for _ in range(3))
    p = 4
    assert y.shape == (2 * 64 * p, 3)
    np.testing.assert_array_equal(y[3 * p:4 * p], (x - u1).astype(np.float32))
    np.testing.assert_array_equal(y[15 * p:16 * p], (x - u1 + u2).astype(np.float32))
    np.testing.assert_array_equal(y[63 * p:64 * p], (x - u1 + u2 - u3).astype(np.float32))
    np.testing.assert_array_equal(y[:3 * p], np.tile(x, (3, 1)))
    np.testing.assert_array_equal(y[64 * p:], y[:64 * p])
    assert np.all(np.abs(u1) <= spread) and np.all(y[:, 2] == np.tile(x[:, 2], 128))
    c = patterns.orale(x, spread, np.random.default_rng(8))
    assert c.tobytes() != y[:64 * p].tobytes()


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


def test_swapper_by_hand():
    a = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    b = np.array([[11, 12], [13, 14], [15, 16]], np.float32)
    # cells (point, dim) picked with replacement: (2, 0), (0, 1), (2, 0) again (swapped back)
    rng = Scripted(integers=[2, 0, 0, 1, 2, 0])
    y = patterns.swapper(a, b, rng, repeat=2)
    assert rng.calls == [("integers", 0, 3), ("integers", 0, 2)] * 3
    s1 = [[1, 2], [3, 4], [15, 6]]
    s2 = [[1, 12], [3, 4], [15, 6]]
    s3 = [[1, 12], [3, 4], [5, 6]]
    np.testing.assert_array_equal(y, np.array(s1 + s1 + s2 + s2 + s3 + s3, np.float32))
    np.testing.assert_array_equal(a, [[1, 2], [3, 4], [5, 6]])  # inputs untouched


def test_swapper_draws_from_the_generator():
    a, b = block(6, 4), block(6, 4, offset=1000)
    y = patterns.swapper(a, b, np.random.default_rng(5), repeat=1)
    assert y.shape == (6 * 6, 4)
    ref, expect, other = np.random.default_rng(5), a.copy(), b.copy()
    for k in range(6):
        p, d = ref.integers(0, 6), ref.integers(0, 4)
        expect[p, d], other[p, d] = other[p, d], expect[p, d]
        np.testing.assert_array_equal(y[6 * k:6 * (k + 1)], expect)
    runs = [patterns.swapper(a, b, np.random.default_rng(s)).tobytes() for s in (5, 5, 6)]
    assert runs[0] == runs[1] == y.tobytes() and runs[0] != runs[2]


def test_apply():
    a, b = block(3, 2), block(3, 2, offset=50)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(patterns.apply("fibo", a, None, rng), patterns.fibo(a))
    np.testing.assert_array_equal(patterns.apply("blender", a, b, rng, 2), patterns.blender(a, b, 2))
    with pytest.raises(UnravelError, match="unknown pattern"):
        patterns.apply("spiral", a, b, rng)
    with pytest.raises(UnravelError, match="orale needs the spread"):
        patterns.apply("orale", a, None, rng)
    with pytest.raises(UnravelError, match="needs two blocks"):
        patterns.apply("swapper", a, None, rng)
    with pytest.raises(UnravelError, match="loops must be >= 1"):
        patterns.apply("default", a, None, rng, 0)
    with pytest.raises(UnravelError, match="same"):
        patterns.blender(a, block(4, 2))


@pytest.mark.parametrize("pattern", patterns.PATTERNS)
def test_length_matches(pattern):
    a, b = block(6, 3), block(6, 3, offset=50)
    y = patterns.apply(pattern, a, b, np.random.default_rng(0), repeat=3, spread=np.ones(3))
    assert y.shape == (patterns.length(pattern, 6, 3, 3), 3)


def test_lengths_by_hand():
    # per loop: orale 64 x the block, swapper K states of K points, blender (K*D + 1) states
    assert patterns.length("orale", 5, 8, 2) == 2 * 64 * 5
    assert patterns.length("swapper", 5, 8, 2) == 2 * 5 * 5
    assert patterns.length("blender", 5, 8, 2) == 2 * 41 * 5
    assert patterns.length("fibo", 10, 8, 1) == 1 + 2 + 3 + 5 + 8


def test_too_long_refused():
    with pytest.raises(UnravelError, match="blender of 1000 points x 1 loops would make"):
        patterns.check("blender", 1000, 16)
    with pytest.raises(UnravelError, match="limit"):
        patterns.apply("default", block(10, 2), None, np.random.default_rng(0), repeat=10 ** 6)
