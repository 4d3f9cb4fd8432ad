"""Morphing (issue 23): each layer two models share becomes (1-t)·A + t·B in float32, from
A's original weights; t = 0 is A and t = 1 is B bit for bit, `restore` brings A back, the
layers that do not match are named. Through the backend, `unravel morph` and a real
[unravel~]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdrun import BUILD, messages_patch, run_pd
from unravel import cli, modelinfo
from unravel.bend import Bender
from unravel.model import load_model


def weights(path) -> dict[str, np.ndarray]:
    m = torch.jit.load(str(path), map_location="cpu")
    return {k: v.detach().numpy().copy() for k, v in m.named_parameters()}


def expected(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """(1-t)·a + t·b with float32 products and sum, as numpy rounds them."""
    return a * np.float32(1.0 - t) + b * np.float32(t)


@pytest.fixture(scope="module")
def b_model(tmp_path_factory):
    """B: the bundled model with three layers bent (a stand-in for a fine-tuned sibling)."""
    path = tmp_path_factory.mktemp("morph") / "b.ts"
    bender = Bender(load_model("default", warmup=False))
    learned = [layer.name for layer in modelinfo.layers(bender.model.module) if layer.learned]
    bender.bend(learned[0], "spread", 1.5)
    bender.bend(learned[1], "offset", 0.05, percent=50)
    bender.bend(learned[-1], "randomize", 300, seed=4)
    bender.save(path)
    return path


def test_morph_mixes_every_matching_layer_and_restore_gives_a_back(b_model):
    a = weights(load_model("default", warmup=False).path)
    b = weights(b_model)
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    bender = Bender(load_model("default", warmup=False))
    for t in (0.25, 1.0, 0.0, 0.7):
        m = bender.morph(b_model, t)
        assert sorted(m.layers) == sorted(a) and m.unmatched == {}
        for k in a:
            got = bender.get_weights(k).reshape(a[k].shape)
            want = b[k] if t == 1.0 else a[k] if t == 0.0 else expected(a[k], b[k], t)
            assert np.array_equal(got, want), (t, k)
    bender.restore()
    assert all(np.array_equal(bender.get_weights(k).reshape(a[k].shape), a[k]) for k in a)


def test_morph_names_the_layers_that_do_not_match_and_keeps_to_a_prefix():
    other = load_model("default4", warmup=False).path
    bender = Bender(load_model("default", warmup=False))
    a = weights(bender.model.path)
    m = bender.morph(other, 0.5)
    assert m.unmatched and m.layers
    assert all(k in a for k in m.layers)
    shape_diff = next(k for k, why in m.unmatched.items() if why.startswith("A "))
    assert "x" in m.unmatched[shape_diff] and f"{len(m.layers)} layers matched" in m.summary()
    prefix = m.layers[0].split(".")[0] + "."
    only = bender.morph(other, 0.5, prefix)
    assert all(k.startswith(prefix) for k in only.layers + list(only.unmatched))


def test_cli_morph_writes_the_mix_and_says_what_matched(b_model, tmp_path, capsys):
    out = tmp_path / "c.ts"
    assert cli.main(["morph", "default", str(b_model), "--t", "0.3", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.strip() == str(out)
    a, b, c = weights(load_model("default", warmup=False).path), weights(b_model), weights(out)
    assert f"{len(a)} layers matched, 0 did not" in printed.err
    assert all(np.array_equal(c[k], expected(a[k], b[k], 0.3)) for k in a)
    assert cli.main(["morph", "default", str(b_model), "--t", "0.3", "-o", str(out)]) == 2   # kept
    assert cli.main(["morph", "default", str(b_model), "--t", "5", "-o", str(tmp_path / "d.ts")]) == 2


@pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(), reason="the external is not built")
def test_pd_morph_moves_t_and_saves_the_mix(b_model, tmp_path):
    """[unravel~] takes `morph <file> <t>` (a burst of t values keeps the newest), replies
    `morph <matched> <unmatched>` and posts it; `save` writes the mix of the last t."""
    box = (f"morph {b_model} 0.1, morph {b_model} 0.2, morph {b_model} 0.6, save c.ts, "
                f"morph {b_model} 9")
    r = run_pd(messages_patch(tmp_path / "morph.pd", "unravel~ default forward", box), timeout=120)
    assert r.returncode == 0
    a, b = weights(load_model("default", warmup=False).path), weights(b_model)
    replies = r.after("reply:")
    assert replies[-2:] == [f"morph {len(a)} 0", f"saved {tmp_path / 'c.ts'}"], replies
    assert any(f"morph b.ts 0.6: {len(a)} layers matched, 0 did not" in ln for ln in r.lines)
    assert r.errors == ["error: [unravel~]: morph: t must be at least -1 and at most 2, got 9"], r.errors
    c = weights(tmp_path / "c.ts")
    t = float(np.float32(0.6))        # what a Pd float holds
    assert all(np.array_equal(c[k], expected(a[k], b[k], t)) for k in a)


@pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(), reason="the external is not built")
def test_pd_morph_plays_a_at_0_and_b_at_1(b_model, tmp_path):
    """In pd -batch, [unravel~ default forward 2048] after `morph B 0` plays A bit for bit,
    after `morph B 1` plays B bit for bit, at 0.5 something else; the file `unravel morph`
    writes loads in [unravel~] (it plays what the backend plays) and in `unravel info`."""
    import soundfile as sf
    from pdrun import Chain, render_patch
    sr, n = 44100, 16384
    x = np.random.default_rng(5).uniform(-0.5, 0.5, n).astype(np.float32)
    sf.write(tmp_path / "x.wav", x, sr, subtype="FLOAT")
    mixed = tmp_path / "mixed.ts"
    assert cli.main(["morph", "default", str(b_model), "--t", "0.5", "-o", str(mixed)]) == 0
    assert cli.main(["info", str(mixed)]) == 0
    obj = "unravel~ default forward 2048"
    chains = [Chain(obj, 1, 1, "x.wav", "t0.wav", extra=(f"morph {b_model} 0",)),
              Chain(obj, 1, 1, "x.wav", "t1.wav", extra=(f"morph {b_model} 1",)),
              Chain(obj, 1, 1, "x.wav", "t5.wav", extra=(f"morph {b_model} 0.5",)),
              Chain(f"unravel~ {mixed} forward 2048", 1, 1, "x.wav", "cli.wav")]
    r = run_pd(render_patch(tmp_path / "play.pd", chains, n), args=["-r", str(sr)], timeout=120)
    assert r.returncode == 0 and r.errors == [], r.errors

    def plays(path) -> np.ndarray:       # as [unravel~] runs it: 2048-sample blocks
        m = load_model(path)
        return np.concatenate([m.run("forward", torch.from_numpy(x[i:i + 2048])[None, None])[0, 0].numpy()
                               for i in range(0, n, 2048)])
    y = {k: sf.read(tmp_path / f"{k}.wav", dtype="float32")[0][2048:2048 + n] for k in ("t0", "t1", "t5", "cli")}
    np.testing.assert_array_equal(y["t0"], plays("default"))
    np.testing.assert_array_equal(y["t1"], plays(b_model))
    np.testing.assert_array_equal(y["cli"], plays(mixed))
    assert not np.array_equal(y["t5"], y["t0"]) and not np.array_equal(y["t5"], y["t1"])
