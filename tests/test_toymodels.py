"""The quirk test models follow nn~'s contract and reproduce each RAVE export quirk,
checked with plain torch.jit.load (no unravel.model)."""

from __future__ import annotations

import pytest
import torch

from unravel.toymodels import make_test_model


def load(p):
    return torch.jit.load(str(p))


def test_contract_buffers_and_shapes(quirk_models):
    for name, p in quirk_models.items():
        m = load(p)
        d = 4 if name == "dims4" else 8
        c = 2 if name == "stereo" else 1
        assert m.encode_params.tolist() == [1, 1, d, 2048], name
        assert m.decode_params.tolist() == [d, 2048, c, 1], name
        assert m.forward_params.tolist() == [1, 1, c, 1], name
        x = torch.randn(3, 1, 4 * 2048)
        z = m.encode(x)
        assert z.shape == (3, d, 4), name
        assert m.decode(z).shape == (3, c, 4 * 2048), name
        assert m.forward(x).shape == (3, c, 4 * 2048), name
        assert m.get_attributes() == ["temperature"]
        assert m.set_temperature(0.5) == 0 and m.get_temperature() == 0.5
        assert m.set_temperature(-1.0) != 0 and m.get_temperature() == 0.5


def test_get_methods_quirk(quirk_models):
    assert load(quirk_models["plain"]).get_methods() == ["forward", "encode", "decode"]
    assert not hasattr(load(quirk_models["no_get_methods"]), "get_methods")


def test_decode_extra_argument(quirk_models):
    m = load(quirk_models["decode_arg"])
    z = torch.randn(1, 8, 3)
    assert torch.equal(m.decode(z), m.decode(z, True))
    with pytest.raises(RuntimeError):
        load(quirk_models["plain"]).decode(z, True)


def test_sample_rate_places(quirk_models):
    assert load(quirk_models["plain"]).sr == 44100
    assert load(quirk_models["sr48k_sampling_rate"]).sampling_rate == 48000
    assert load(quirk_models["sr22k_rave"])._rave.sampling_rate == 22050
    m = load(quirk_models["sr_none"])
    assert not hasattr(m, "sr") and not hasattr(m, "sampling_rate")


def test_streaming_keeps_state_and_limits_batch(quirk_models):
    m = load(quirk_models["streaming"])
    z = torch.randn(2, 8, 4)
    a, b = m.decode(z), m.decode(z)
    assert not torch.equal(a, b)  # the cache carried the previous call's last frames
    # a non-streaming model of the same kind is stateless
    s = load(quirk_models["decode_arg"])
    assert torch.equal(s.decode(z), s.decode(z))
    m.decode(torch.randn(64, 8, 1))
    with pytest.raises(Exception, match="batch size above 64"):
        m.decode(torch.randn(65, 8, 1))


def test_variational_pads_with_noise(quirk_models):
    m = load(quirk_models["variational"])
    z = torch.randn(1, 8, 4)
    assert not torch.equal(m.decode(z), m.decode(z))
    torch.manual_seed(1)
    a = m.decode(z)
    torch.manual_seed(1)
    assert torch.equal(a, m.decode(z))


def test_same_seed_same_bytes(tmp_path):
    a = make_test_model(tmp_path / "a.ts", seed=3)
    b = make_test_model(tmp_path / "b.ts", seed=3)
    c = make_test_model(tmp_path / "c.ts", seed=4)
    pa, pb, pc = (dict(load(p).named_parameters()) for p in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not torch.equal(pa["codec.encoder.weight"], pc["codec.encoder.weight"])


def test_pqmf_is_fixed_and_reconstructs(quirk_models):
    m = load(quirk_models["plain"])
    params = dict(m.named_parameters())
    assert not params["pqmf.weight"].requires_grad
    assert params["codec.encoder.weight"].requires_grad
    from unravel.toymodels import FixedFilterbank
    fb = FixedFilterbank(16)
    x = torch.randn(1, 1, 4096)
    y = fb.synthesis(fb.analysis(x))
    assert torch.allclose(y[..., :-16], x[..., :-16], atol=1e-5)
