"""The quirk test models follow nn~'s contract and reproduce each RAVE export quirk,
checked with plain torch.jit.load (no unravel.model)."""

from __future__ import annotations

import pytest
import torch

from toymodels import make_test_model
from unravel import modelinfo


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
    from unravel.data.toyrave import FixedFilterbank
    fb = FixedFilterbank(16)
    x = torch.randn(1, 1, 4096)
    y = fb.synthesis(fb.analysis(x))
    assert torch.allclose(y[..., :-16], x[..., :-16], atol=1e-5)


# --------------------------------------------------------------------------- bundled data

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from unravel.model import DATA_DIR, load_model  # noqa: E402
from unravel.data.toyrave import ToyRave, export, make_loop, reconstruction_distance, train  # noqa: E402


def test_bundled_loop_is_the_seeded_synthesis():
    audio, sr = sf.read(DATA_DIR / "loop.wav", dtype="float32")
    assert sr == 44100 and audio.ndim == 1 and 8 <= len(audio) / sr <= 12
    assert (DATA_DIR / "loop.wav").stat().st_size < 800_000
    ref = make_loop(seed=0)
    assert ref.tobytes() == make_loop(seed=0).tobytes()
    assert not np.array_equal(ref, make_loop(seed=1))
    np.testing.assert_allclose(audio, ref, atol=1.0 / 32767)


@pytest.mark.parametrize("name,dims", [("default", 8), ("default4", 4)])
def test_bundled_models_are_trained_and_deterministic(name, dims):
    path = DATA_DIR / f"{name}.ts"
    assert path.stat().st_size < 5_000_000
    m = load_model(name)
    assert (m.sr, m.latent_dims, m.ratio, m.in_channels, m.out_channels) == (44100, dims, 2048, 1, 1)
    assert {l.name for l in modelinfo.layers(m.module) if not l.learned} == {"pqmf.weight"}
    audio, _ = sf.read(DATA_DIR / "loop.wav", dtype="float32")
    torch.manual_seed(0)
    untrained = reconstruction_distance(ToyRave(dims=dims), audio)
    trained = reconstruction_distance(m.module, audio)
    assert trained < 0.75 * untrained, (trained, untrained)
    z = m.encode(audio[None])
    assert z.shape == (dims, len(audio) // 2048 + (len(audio) % 2048 > 0))
    a, b = m.decode(z), m.decode(z)
    assert a.tobytes() == b.tobytes()  # the default model's decode is deterministic
    assert 0.05 < np.abs(a).max() < 2.0


def test_training_runs_and_exports(tmp_path):
    audio = make_loop(seed=2)[:60000]
    a = train(4, audio, steps=2, seed=5, crop=8192, batch=2, log=lambda s: None)
    b = train(4, audio, steps=2, seed=5, crop=8192, batch=2, log=lambda s: None)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    m = load_model(export(a, tmp_path / "t.ts"))
    assert m.latent_dims == 4 and m.decode(np.zeros((4, 2), np.float32)).shape == (1, 4096)
