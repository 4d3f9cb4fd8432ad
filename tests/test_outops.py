"""Output ops (issue 23 part 2): offset, threshold and clamp on what a layer gives, put into
the loaded TorchScript graph (unravel.outops), checked against the model's own submodules on
the same input, through the backend, `unravel output`, `save` and a real [unravel~]."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from pdrun import BUILD, Chain, messages_patch, render_patch, run_pd
from unravel import cli
from unravel.bend import Bender
from unravel.errors import UnravelError
from unravel.model import DEFAULT_MODEL, load_model

SR = 44100
LAST = "encoder.net.10"     # its output is encode's output
MID = "decoder.net.6"       # a ConvTranspose1d inside the decoder


def latents(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((1, 8, n)).astype(np.float32))


def audio(n: int = 8192, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(-0.5, 0.5, (1, 1, n)).astype(np.float32))


def reference_decode(model, z: torch.Tensor, at: int, op) -> torch.Tensor:
    """decode run submodule by submodule (the model's own), `op` on net[at]'s output."""
    m = model.module
    h = z * m.temperature
    for i, layer in enumerate(m.decoder.net.children()):
        h = layer(h)
        if i == at:
            h = op(h)
    return m.pqmf.synthesis(h)


def test_offset_on_the_last_layer_adds_exactly_and_restore_is_bit_identical():
    m = load_model("default")
    b = Bender(m)
    x = audio()
    y0 = m.run("encode", x)
    assert b.output(LAST + ".weight", "offset", [0.0]) == 2    # encode and forward call it
    assert torch.equal(m.run("encode", x), y0)
    b.output(LAST, "offset", [0.25])                           # a new value: no rebuild
    assert torch.equal(m.run("encode", x), y0 + torch.tensor(0.25))
    assert b.outputs() == {LAST: {"offset": [0.25]}}
    b.restore(LAST)
    assert b.outputs() == {} and torch.equal(m.run("encode", x), y0)


def test_ops_match_the_models_own_submodules():
    m = load_model("default")
    b = Bender(m)
    z = latents()
    b.output(MID, "threshold", [0.05])
    thr = lambda h: torch.where(h > torch.tensor(0.05), h, 0.0)     # noqa: E731
    assert torch.equal(m.run("decode", z), reference_decode(m, z, 6, thr))
    b.output(MID, "offset", [-0.1])
    b.output(MID, "clamp", [-0.2, 0.3])
    chain = lambda h: torch.clamp(thr(h) + torch.tensor(-0.1), torch.tensor(-0.2), torch.tensor(0.3))  # noqa: E731
    y = m.run("decode", z)
    assert torch.equal(y, reference_decode(m, z, 6, chain))
    assert not torch.equal(y, reference_decode(m, z, 6, lambda h: h))
    b.restore()
    assert torch.equal(m.run("decode", z), reference_decode(m, z, 6, lambda h: h))


def test_a_streaming_model_keeps_its_state_through_the_rewritten_method(quirk_models):
    """The inlined method updates the module's own caches: with offset 0 a streaming model
    plays what an untouched copy plays, call after call, and its caches stay equal."""
    path = quirk_models["streaming"]
    a, b = load_model(path, share=False), load_model(path, share=False)
    bender = Bender(b)
    assert bender.output("codec.latent.conv", "offset", [0.0]) == 2
    for seed in range(4):
        z = latents(3, seed)
        assert torch.equal(a.run("decode", z), b.run("decode", z))
    caches = lambda m: [t for n, t in m.module.named_buffers() if n.endswith("cache")]   # noqa: E731
    assert caches(a) and all(torch.equal(x, y) for x, y in zip(caches(a), caches(b)))
    bender.output("codec.latent.conv", "offset", [0.3])
    z = latents(3, 9)
    assert not torch.equal(a.run("decode", z), b.run("decode", z))


def test_weight_bends_and_output_ops_go_together_and_save(tmp_path):
    m = load_model("default")
    b = Bender(m)
    z = latents(seed=3)
    b.bend(MID + ".weight", "spread", 0.5)
    b.output(MID, "clamp", [-0.1, 0.1])
    live = m.run("decode", z)
    saved = load_model(b.save(tmp_path / "o.ts"))
    assert torch.equal(saved.run("decode", z), live)
    plain = load_model(tmp_path / "o.ts", warmup=False)
    assert Bender(plain).outputs() == {}       # what it saved is in its graph, not a setting


def test_output_errors_are_one_line():
    b = Bender(load_model("default", warmup=False))
    with pytest.raises(UnravelError, match="no convolution or linear layer 'decoder.nope'"):
        b.output("decoder.nope", "offset", [1.0])
    with pytest.raises(UnravelError, match="unknown op 'gain'"):
        b.output(MID, "gain", [1.0])
    with pytest.raises(UnravelError, match="clamp takes 2 values, got 1"):
        b.output(MID, "clamp", [1.0])
    with pytest.raises(UnravelError, match="clamp needs low <= high, got 1 0"):
        b.output(MID, "clamp", [1.0, 0.0])
    with pytest.raises(UnravelError, match="finite"):
        b.output(MID, "offset", [float("nan")])
    assert b.outputs() == {}


def test_cli_output(tmp_path, capsys):
    out = tmp_path / "t.ts"
    assert cli.main(["output", "-m", "default", "--layer", LAST, "--op", "offset", "--value", "0.5",
                     "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.strip() == str(out) and f"output {LAST} offset 0.5: 2 calls" in printed.err
    x = audio(seed=5)
    ref = load_model("default").run("encode", x)
    assert torch.equal(load_model(out).run("encode", x), ref + torch.tensor(0.5))
    assert cli.main(["output", "-m", "default", "--layer", LAST, "--op", "clamp", "--value", "0",
                     "-o", str(tmp_path / "u.ts")]) == 2
    assert "--high goes with --op clamp" in capsys.readouterr().err


@pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(), reason="the external is not built")
def test_pd_output_messages_and_save(tmp_path):
    box = (f"output {LAST} offset 0.25, output {LAST} offset 0.5, output {MID} clamp -0.2 0.2, "
                f"save o.ts, output {MID} clamp 1 0, output nope offset 1, output {MID} twist 1")
    r = run_pd(messages_patch(tmp_path / "o.pd", "unravel~ default forward", box), timeout=120)
    assert r.returncode == 0
    replies = r.after("reply:")
    moved = [x for x in replies if x == f"output {LAST} offset 2"]
    assert 1 <= len(moved) <= 2         # a burst on one layer and op keeps the newest (in C)
    assert replies[len(moved):] == [f"output {MID} clamp 2", f"saved {tmp_path / 'o.ts'}"]
    assert r.errors == ["error: [unravel~]: output: clamp needs low <= high, got 1 0",
                        "error: [unravel~]: output: no convolution or linear layer 'nope' in "
                        "forward, encode, decode",
                        "error: [unravel~]: output: op must be one of offset, threshold, clamp, got 'twist'"], r.errors
    saved = load_model(tmp_path / "o.ts")
    ref = load_model("default")
    x, z = audio(seed=7), latents(seed=7)
    assert torch.equal(saved.run("encode", x), ref.run("encode", x) + torch.tensor(0.5))
    clip = lambda h: torch.clamp(h, torch.tensor(-0.2), torch.tensor(0.2))    # noqa: E731
    assert torch.equal(saved.run("decode", z), reference_decode(ref, z, 6, clip))


@pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(), reason="the external is not built")
def test_pd_plays_the_output_ops(tmp_path):
    """[unravel~ default forward 2048] with a threshold and an offset on a decoder layer plays
    what the backend plays with the same ops, bit for bit; restore plays the original."""
    x = np.random.default_rng(3).uniform(-0.5, 0.5, 16384).astype(np.float32)
    sf.write(tmp_path / "x.wav", x, SR, subtype="FLOAT")
    ops = (f"output {MID} threshold 0.05", f"output {MID} offset 0.1")
    chains = [Chain("unravel~ default forward 2048", 1, 1, "x.wav", "y0.wav", extra=ops),
              Chain("unravel~ default forward 2048", 1, 1, "x.wav", "y1.wav",
                    extra=(*ops, f"restore {MID}"))]
    r = run_pd(render_patch(tmp_path / "play.pd", chains, len(x)), args=["-r", str(SR)], timeout=120)
    assert r.returncode == 0 and r.errors == [], r.errors
    blocks = lambda m: np.concatenate([m.run("forward", torch.from_numpy(x[i:i + 2048])[None, None])[0, 0].numpy()
                                       for i in range(0, len(x), 2048)])   # as [unravel~] runs it
    bent = load_model(DEFAULT_MODEL, share=False)
    b = Bender(bent)
    b.output(MID, "threshold", [0.05])
    b.output(MID, "offset", [0.1])
    ys = [sf.read(tmp_path / f"y{k}.wav", dtype="float32")[0] for k in range(2)]
    L = 2048
    np.testing.assert_array_equal(ys[0][L:L + len(x)], blocks(bent))
    np.testing.assert_array_equal(ys[1][L:L + len(x)], blocks(load_model(DEFAULT_MODEL)))
    assert not np.array_equal(ys[0], ys[1])
