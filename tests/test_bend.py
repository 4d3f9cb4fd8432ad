"""unravel.bend: ops checked against a direct numpy computation of Bender._apply's rule,
bit-exact restore, save -> plain torch.jit.load -> same outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unravel import modelinfo
from unravel.bend import Bender, touched_indices
from unravel.errors import UnravelError
from unravel.model import load_model

LAYER = "codec.encoder.weight"  # 8 x 16 x 128 = 16384 weights


def np_indices(n: int, p: float) -> np.ndarray:
    """bend.touched_indices: n*p/100 evenly spaced indices, step 100/p, wrapped modulo n."""
    k = max(1, math.floor(n * p / 100))
    return (np.floor(np.arange(k) * (100.0 / p)).astype(np.int64)) % n


def expected(orig, p, offset=0.0, spread=1.0, invert=False, zero=False):
    idx = np.arange(orig.size) if p >= 100 else np_indices(orig.size, p)
    out = orig.copy()
    sign = np.float32(-1.0 if invert else 1.0)
    out[idx] = 0.0 if zero else orig[idx] * np.float32(spread * sign) + np.float32(offset)
    return out, idx


@pytest.fixture
def bender(quirk_models):
    return Bender(load_model(quirk_models["decode_arg"]))


def test_layers_and_weights(bender):
    m = bender.model
    assert bender.layers() == [l.name for l in modelinfo.layers(m.module)]
    assert "pqmf.weight" in bender.layers()
    w = bender.get_weights(LAYER)
    assert w.dtype == np.float32 and w.shape == (16384,)
    ref = dict(torch.jit.load(str(m.path)).named_parameters())[LAYER].detach().numpy().ravel()
    np.testing.assert_array_equal(w, ref)
    new = np.linspace(-1, 1, w.size, dtype=np.float32)
    bender.set_weights(LAYER, new)
    np.testing.assert_array_equal(bender.get_weights(LAYER), new)
    with pytest.raises(UnravelError, match="has 16384 weights, got 3"):
        bender.set_weights(LAYER, [1, 2, 3])
    np.testing.assert_array_equal(bender.get_weights(LAYER), new)  # nothing written
    with pytest.raises(UnravelError, match="no layer 'nope'"):
        bender.get_weights("nope")


@pytest.mark.parametrize("percent", [100, 50, 10, 33.3, 7, 1])
def test_indices_match_design(percent):
    for n in (1, 7, 100, 16384, 1000003):
        got = touched_indices(n, percent)
        ref = np_indices(n, percent)
        if got is None:
            assert percent == 100
        else:
            np.testing.assert_array_equal(got.numpy(), ref)
            assert len(np.unique(ref)) == len(ref)


def test_ops_match_numpy_and_combine(bender):
    orig = bender.get_weights(LAYER)
    bender.bend(LAYER, "offset", 0.05, percent=10)
    want, idx = expected(orig, 10, offset=0.05)
    np.testing.assert_array_equal(bender.get_weights(LAYER), want)
    assert len(idx) == 1638 and idx[1] == 10
    # settings combine and are recomputed from the originals (not accumulated)
    bender.bend(LAYER, "spread", 2.5)
    bender.bend(LAYER, "spread", 2.0)
    np.testing.assert_array_equal(bender.get_weights(LAYER), expected(orig, 10, offset=0.05, spread=2.0)[0])
    bender.bend(LAYER, "invert", 1, percent=30)
    np.testing.assert_array_equal(bender.get_weights(LAYER),
                                  expected(orig, 30, offset=0.05, spread=2.0, invert=True)[0])
    assert bender.settings(LAYER) == {"offset": 0.05, "spread": 2.0, "randomize": 0.0, "invert": True,
                                      "zero": False, "percent": 30.0, "seed": 0}
    bender.bend(LAYER, "invert", 0, percent=100)
    np.testing.assert_array_equal(bender.get_weights(LAYER), expected(orig, 100, offset=0.05, spread=2.0)[0])
    bender.bend(LAYER, "zero", 1, percent=25)
    got = bender.get_weights(LAYER)
    want, idx = expected(orig, 25, zero=True)
    assert np.all(got[idx] == 0)
    rest = np.setdiff1d(np.arange(orig.size), idx)
    np.testing.assert_array_equal(got[rest], orig[rest])


def test_randomize_seeded(bender, quirk_models):
    orig = bender.get_weights(LAYER)
    bender.bend(LAYER, "randomize", 1000, percent=50, seed=7)
    a = bender.get_weights(LAYER)
    _, idx = expected(orig, 50)
    rest = np.setdiff1d(np.arange(orig.size), idx)
    np.testing.assert_array_equal(a[rest], orig[rest])
    noise = (a[idx] - orig[idx]) / (1000 * 1e-4)
    assert abs(noise.std() - 1) < 0.1 and abs(noise.mean()) < 0.1
    # same seed, same bytes, on another Bender over another load of the model
    other = Bender(load_model(quirk_models["decode_arg"]))
    other.bend(LAYER, "randomize", 1000, percent=50, seed=7)
    assert other.get_weights(LAYER).tobytes() == a.tobytes()
    # amount rescales the same noise; a new seed changes it
    bender.bend(LAYER, "randomize", 500)
    np.testing.assert_allclose((bender.get_weights(LAYER)[idx] - orig[idx]) / (500 * 1e-4), noise, atol=2e-2)
    bender.bend(LAYER, "randomize", 1000, seed=8)
    assert not np.array_equal(bender.get_weights(LAYER), a)


def test_restore_bit_exact(bender):
    orig = {l: bender.get_weights(l) for l in bender.layers()}
    for l in bender.layers()[1:]:
        bender.bend(l, "randomize", 2000, percent=60, seed=1)
        bender.bend(l, "offset", 0.1)
    bender.set_weights("pqmf.weight", np.zeros(orig["pqmf.weight"].size))
    bender.restore(LAYER)
    assert bender.get_weights(LAYER).tobytes() == orig[LAYER].tobytes()
    assert bender.settings(LAYER)["offset"] == 0.0
    assert bender.get_weights("codec.decoder.weight").tobytes() != orig["codec.decoder.weight"].tobytes()
    bender.restore()
    for l in bender.layers():
        assert bender.get_weights(l).tobytes() == orig[l].tobytes(), l


def test_bend_changes_model_output(bender):
    z = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    before = bender.model.decode(z)
    bender.bend("codec.decoder.weight", "spread", 0.5)
    assert not np.array_equal(before, bender.model.decode(z))
    bender.restore()
    np.testing.assert_array_equal(before, bender.model.decode(z))


def test_save_loads_with_plain_torch(bender, tmp_path):
    bender.bend("codec.decoder.weight", "randomize", 2000, percent=50, seed=3)
    bender.bend(LAYER, "invert", 1)
    out = bender.save(tmp_path / "bent.ts")
    assert out == tmp_path / "bent.ts" and not list(tmp_path.glob("*.tmp"))
    plain = torch.jit.load(str(out))
    assert plain.get_methods() == ["forward", "encode", "decode"]
    assert plain.decode_params.tolist() == [8, 2048, 1, 1]
    x = torch.randn(1, 1, 4 * 2048)
    z = torch.randn(1, 8, 4)
    m = bender.model
    assert torch.equal(plain.encode(x), m.run("encode", x))
    assert torch.equal(plain.decode(z), m.run("decode", z))
    assert torch.equal(plain.forward(x), m.run("forward", x))
    # and it is still a model unravel can load
    assert load_model(out).latent_dims == 8


def test_bad_bends(bender, tmp_path):
    with pytest.raises(UnravelError, match="unknown op 'twist'"):
        bender.bend(LAYER, "twist", 1)
    with pytest.raises(UnravelError, match="finite"):
        bender.bend(LAYER, "offset", float("nan"))
    with pytest.raises(UnravelError, match="percent"):
        bender.bend(LAYER, "offset", 0.1, percent=0)
    with pytest.raises(UnravelError, match="nodir"):
        bender.save(tmp_path / "nodir" / "x.ts")


def test_reload_resets_state(bender):
    orig = bender.get_weights(LAYER)
    bender.bend(LAYER, "offset", 0.1)
    bender.model.reload()
    np.testing.assert_array_equal(bender.get_weights(LAYER), orig)
    assert bender.settings(LAYER)["offset"] == 0.0
