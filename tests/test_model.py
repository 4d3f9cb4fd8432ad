"""unravel.model on the quirk test models: discovery, sr, attributes, padding, quirks, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unravel import modelinfo
from unravel.errors import UnravelError
from unravel.methods import MethodParams
from unravel.model import DEFAULT_MODEL, load_model, resolve_model, set_threads


def test_every_quirk_model_loads_and_runs(quirk_models):
    for name, p in quirk_models.items():
        m = load_model(p)
        d = 4 if name == "dims4" else 8
        c = 2 if name == "stereo" else 1
        assert m.methods["encode"] == MethodParams(1, 1, d, 2048)
        assert m.methods["decode"] == MethodParams(d, 2048, c, 1)
        assert set(m.methods) == {"encode", "decode", "forward"}
        assert (m.latent_dims, m.ratio, m.in_channels, m.out_channels) == (d, 2048, 1, c)
        audio = np.random.default_rng(0).standard_normal((1, 3 * 2048)).astype(np.float32) * 0.3
        z = m.encode(audio)
        assert z.shape == (d, 3) and z.dtype == np.float32
        y = m.decode(z)
        assert y.shape == (c, 3 * 2048) and y.dtype == np.float32 and np.abs(y).max() > 0
        assert m.forward(audio).shape == (c, 3 * 2048)
        json.dumps(modelinfo.info(m))


def test_run_matches_direct_call(quirk_models):
    m = load_model(quirk_models["decode_arg"])
    direct = torch.jit.load(str(quirk_models["decode_arg"]))
    x = torch.randn(2, 1, 4096)
    assert torch.equal(m.run("encode", x), direct.encode(x))
    z = torch.randn(2, 8, 5)
    assert torch.equal(m.run("decode", z), direct.decode(z))
    assert torch.equal(m.run("forward", x), direct.forward(x))


def test_method_discovery_without_get_methods(quirk_models):
    m = load_model(quirk_models["no_get_methods"])
    assert not hasattr(m.module, "get_methods")
    assert set(m.methods) == {"encode", "decode", "forward"}
    assert m.methods["forward"] == MethodParams(1, 1, 1, 1)


def test_sample_rate_sources(quirk_models):
    assert load_model(quirk_models["plain"]).sr == 44100
    assert load_model(quirk_models["sr48k_sampling_rate"]).sr == 48000
    assert load_model(quirk_models["sr22k_rave"]).sr == 22050
    assert load_model(quirk_models["sr_none"]).sr == 44100  # no attribute: default
    assert load_model(quirk_models["sr_none"], sr=32000).sr == 32000
    assert load_model(quirk_models["sr48k_sampling_rate"], sr=44100).sr == 44100


def test_attributes_get_set(quirk_models):
    m = load_model(quirk_models["decode_arg"])
    assert m.attributes() == ["temperature"]
    assert m.get_attribute("temperature") == [1.0]
    z = np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32)
    before = m.decode(z)
    m.set_attribute("temperature", ["0.25"])
    assert m.get_attribute("temperature") == [0.25]
    assert not np.array_equal(before, m.decode(z))
    with pytest.raises(UnravelError, match="refused"):
        m.set_attribute("temperature", [-1])
    assert m.get_attribute("temperature") == [0.25]
    with pytest.raises(UnravelError, match="no attribute"):
        m.get_attribute("nope")
    with pytest.raises(UnravelError, match="takes 1 value"):
        m.set_attribute("temperature", [1, 2])


def test_padding_to_whole_frames(quirk_models):
    m = load_model(quirk_models["decode_arg"])
    rng = np.random.default_rng(2)
    audio = rng.standard_normal((1, 5000)).astype(np.float32)
    z = m.encode(audio)
    padded = np.concatenate([audio, np.zeros((1, 3 * 2048 - 5000), np.float32)], 1)
    assert z.shape == (8, 3)
    np.testing.assert_array_equal(z, m.encode(padded))
    y = m.forward(audio)  # forward pads to whole latent frames, output cropped to the input
    assert y.shape == (1, 5000)
    np.testing.assert_array_equal(y, m.forward(padded)[:, :5000])


def test_streaming_state_and_batch_limit(quirk_models):
    m = load_model(quirk_models["streaming"])
    z = torch.randn(1, 8, 2)
    a = m.run("decode", z)
    b = m.run("decode", z)
    assert not torch.equal(a, b)  # cached convolution state carried over
    assert m.run("decode", torch.randn(64, 8, 1)).shape == (64, 1, 2048)
    with pytest.raises(UnravelError, match="streaming.ts: decode failed .*batch size above 64"):
        m.run("decode", torch.randn(65, 8, 1))


def test_variational_decode_is_noisy_default_is_not(quirk_models):
    z = np.random.default_rng(3).standard_normal((8, 4)).astype(np.float32)
    v = load_model(quirk_models["variational"])
    assert not np.array_equal(v.decode(z), v.decode(z))
    d = load_model(quirk_models["decode_arg"])
    np.testing.assert_array_equal(d.decode(z), d.decode(z))


def test_stereo(quirk_models):
    m = load_model(quirk_models["stereo"])
    y = m.decode(np.ones((8, 2), np.float32))
    assert y.shape == (2, 4096) and not np.array_equal(y[0], y[1])


def test_wrong_shapes_raise(quirk_models):
    m = load_model(quirk_models["plain"])
    with pytest.raises(UnravelError, match=r"decode takes \(8, T\)"):
        m.decode(np.zeros((4, 3), np.float32))
    with pytest.raises(UnravelError, match="no method 'nope'"):
        m.run("nope", torch.zeros(1, 1, 10))
    with pytest.raises(UnravelError, match="takes"):
        m.run("encode", torch.zeros(1, 2, 2048))


def test_bad_files_raise_one_line(tmp_path):
    missing = tmp_path / "missing.ts"
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"this is not a model\n" * 10)
    state = tmp_path / "state.ts"
    torch.save({"w": torch.zeros(3)}, state)
    nocontract = tmp_path / "nocontract.ts"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(nocontract))
    for path, cause in ((missing, "not found"), (junk, "not a TorchScript"), (state, "not a TorchScript"),
                        (nocontract, "without nn~'s contract")):
        with pytest.raises(UnravelError) as e:
            load_model(path)
        msg = str(e.value)
        assert path.name in msg and cause in msg and "\n" not in msg


def test_resolve_model(tmp_path, monkeypatch, quirk_models):
    d = tmp_path / "models"
    d.mkdir()
    (d / "mine.ts").write_bytes(quirk_models["plain"].read_bytes())
    assert resolve_model("mine", search=[d]) == (d / "mine.ts").resolve()
    assert resolve_model("mine.ts", search=[d]) == (d / "mine.ts").resolve()
    monkeypatch.chdir(d)
    assert resolve_model("mine") == (d / "mine.ts").resolve()
    with pytest.raises(UnravelError, match="other: model file not found"):
        resolve_model("other", search=[d])
    if DEFAULT_MODEL.is_file():
        assert resolve_model("default") == DEFAULT_MODEL


def test_reload_and_threads(quirk_models):
    m = load_model(quirk_models["plain"], threads=1)
    assert torch.get_num_threads() == 1
    m.own()     # writes go to a private copy (issue 14: Models of one file share its module)
    w = dict(m.module.named_parameters())["codec.encoder.weight"]
    with torch.no_grad():
        w.add_(1.0)
    m.reload()
    ref = dict(torch.jit.load(str(quirk_models["plain"])).named_parameters())["codec.encoder.weight"]
    assert torch.equal(dict(m.module.named_parameters())["codec.encoder.weight"], ref)
    set_threads(1)


def test_layers(quirk_models):
    m = load_model(quirk_models["plain"])
    layers = {l.name: l for l in modelinfo.layers(m.module)}
    assert not layers["pqmf.weight"].learned
    assert layers["codec.encoder.weight"].learned
    assert layers["codec.encoder.weight"].shape == (8, 16, 128)
    assert layers["codec.encoder.weight"].numel == 8 * 16 * 128
    assert modelinfo.num_parameters(m.module) == sum(l.numel for l in layers.values())


def test_run_leaves_grad_mode_alone_even_on_error(quirk_models):
    m = load_model(quirk_models["streaming"])
    assert not torch.is_inference_mode_enabled()
    y = m.run("decode", torch.randn(1, 8, 2))
    assert y.is_inference() and not torch.is_inference_mode_enabled()
    with pytest.raises(UnravelError):
        m.run("decode", torch.randn(65, 8, 1))
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    with torch.inference_mode():
        assert m.run("decode", torch.randn(1, 8, 2)).shape == (1, 1, 4096)
