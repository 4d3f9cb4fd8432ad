"""unravel.stats and unravel.distributions: statistics vs numpy, sample moments, plot."""

from __future__ import annotations

import numpy as np
import pytest

from unravel import distributions, plots, stats
from unravel.errors import UnravelError


@pytest.fixture(scope="module")
def z() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 4000))
    mix = np.array([[1.0, 0, 0], [0.8, 0.6, 0], [0, 0, 1.0]])
    scale = np.array([[0.5], [2.0], [1.0]])
    shift = np.array([[1.0], [-2.0], [0.0]])
    x = mix @ base * scale + shift
    x[2] = rng.exponential(size=4000)  # skewed: quartile centre != mean
    return x.astype(np.float32)


def test_stats_match_numpy(z):
    s = stats.compute(z)
    x = z.astype(np.float64)
    np.testing.assert_allclose(s.mean, x.mean(1))
    np.testing.assert_allclose(s.std, x.std(1))
    np.testing.assert_array_equal(s.min, x.min(1))
    np.testing.assert_array_equal(s.max, x.max(1))
    np.testing.assert_allclose(s.q1, np.percentile(x, 25, axis=1))
    np.testing.assert_allclose(s.median, np.median(x, axis=1))
    np.testing.assert_allclose(s.q3, np.percentile(x, 75, axis=1))
    np.testing.assert_allclose(s.iqr, s.q3 - s.q1)
    np.testing.assert_allclose(s.cov, np.cov(x, bias=True))
    np.testing.assert_allclose(s.corr, np.corrcoef(x), atol=1e-12)
    assert (s.dims, s.frames) == (3, 4000)


def test_iqr_mode(z):
    s = stats.compute(z)
    np.testing.assert_allclose(s.iqr_centre, (s.q1 + s.q3) / 2)
    np.testing.assert_allclose(s.iqr_spread, (s.q3 - s.q1) / 1.35)
    np.testing.assert_allclose(s.lower, s.q1 - 1.5 * (s.q3 - s.q1))
    np.testing.assert_allclose(s.upper, s.q3 + 1.5 * (s.q3 - s.q1))
    c, sp = s.centre_spread(iqr=True)
    np.testing.assert_array_equal(c, s.iqr_centre)
    np.testing.assert_allclose(np.diag(s.covariance(iqr=True)), s.iqr_spread ** 2)
    d = s.to_dict(iqr=True)
    assert d["iqr_lower"] == s.lower.tolist() and len(d["correlation"]) == 3
    assert "iqr_lower" not in s.to_dict()


def test_constant_dimension():
    x = np.stack([np.ones(10), np.arange(10.0)])
    s = stats.compute(x)
    assert s.std[0] == 0 and np.all(np.isfinite(s.corr))
    np.testing.assert_array_equal(s.corr, [[1, 0], [0, 1]])


def test_stats_errors():
    with pytest.raises(UnravelError):
        stats.compute(np.zeros((3, 0)))


def test_plot(tmp_path, z):
    p = plots.histograms(z, tmp_path / "h.png", title="t")
    data = p.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(UnravelError, match="h.png: already exists"):
        plots.histograms(z, tmp_path / "h.png")


N = 40000


@pytest.mark.parametrize("iqr", [False, True])
def test_normal_moments(z, iqr):
    s = stats.compute(z)
    c, sp = s.centre_spread(iqr)
    x = distributions.sample(s, "normal", N, np.random.default_rng(1), iqr=iqr)
    assert x.shape == (N, 3) and x.dtype == np.float32
    assert np.all(np.abs(x.mean(0) - c) < 5 * sp / np.sqrt(N))
    np.testing.assert_allclose(x.std(0), sp, rtol=0.03)


def test_uniform_moments(z):
    s = stats.compute(z)
    x = distributions.sample(s, "uniform", N, np.random.default_rng(2))
    lo, hi = s.mean - 3 * s.std, s.mean + 3 * s.std
    assert np.all(x.min(0) >= lo - 1e-5) and np.all(x.max(0) <= hi + 1e-5)
    assert np.all(x.min(0) < lo + 0.01 * (hi - lo)) and np.all(x.max(0) > hi - 0.01 * (hi - lo))
    np.testing.assert_allclose(x.std(0), np.sqrt(3) * s.std, rtol=0.03)


def test_iqr_uniform_bounds(z):
    s = stats.compute(z)
    x = distributions.sample(s, "iqr-uniform", N, np.random.default_rng(3))
    assert np.all(x.min(0) >= s.lower - 1e-5) and np.all(x.max(0) <= s.upper + 1e-5)
    np.testing.assert_allclose(x.mean(0), (s.lower + s.upper) / 2, atol=0.05 * (s.upper - s.lower).max())


def test_correlation_covariance(z):
    s = stats.compute(z)
    x = distributions.sample(s, "correlation", N, np.random.default_rng(4)).astype(np.float64)
    np.testing.assert_allclose(x.mean(0), s.mean, atol=0.05)
    np.testing.assert_allclose(np.cov(x.T), s.cov, atol=0.05 * np.abs(s.cov).max())
    assert np.corrcoef(x.T)[0, 1] > 0.7  # dims 0 and 1 are strongly correlated in z


def test_correlation_repairs_non_psd():
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    fixed = distributions.nearest_psd(bad)
    assert np.linalg.eigvalsh(fixed).min() >= -1e-12
    np.testing.assert_allclose(fixed, [[1.5, 1.5], [1.5, 1.5]])
    x = distributions.multivariate_normal(np.zeros(2), bad, N, np.random.default_rng(5))
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(np.cov(x.T), fixed, atol=0.06)


def test_correlation_is_numpys_draw(z):
    # UnRAVEl draws with numpy's multivariate_normal (SVD); the same seed gives the same numbers
    s = stats.compute(z)
    x = distributions.multivariate_normal(s.mean, s.cov, 40, np.random.default_rng(42))
    np.testing.assert_array_equal(x, np.random.default_rng(42).multivariate_normal(s.mean, s.cov, size=40))
    legacy = distributions.multivariate_normal(s.mean, s.cov, 40, np.random.RandomState(42))
    np.testing.assert_array_equal(legacy, np.random.RandomState(42).multivariate_normal(s.mean, s.cov, size=40))
    y = distributions.sample(s, "correlation", 40, np.random.default_rng(42))
    np.testing.assert_array_equal(y, x.astype(np.float32))
    # by hand: the identity covariance draws mean + standard normals, in order
    mean = np.array([1.0, -2.0])
    got = distributions.multivariate_normal(mean, np.eye(2), 3, np.random.default_rng(0))
    np.testing.assert_allclose(got, mean + np.random.default_rng(0).standard_normal((3, 2)), atol=1e-12)


def test_seeded(z):
    s = stats.compute(z)
    for dist in distributions.DISTRIBUTIONS:
        a = distributions.sample(s, dist, 50, np.random.default_rng(9))
        b = distributions.sample(s, dist, 50, np.random.default_rng(9))
        c = distributions.sample(s, dist, 50, np.random.default_rng(10))
        assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    with pytest.raises(UnravelError, match="unknown distribution"):
        distributions.sample(s, "cauchy", 5, np.random.default_rng(0))
