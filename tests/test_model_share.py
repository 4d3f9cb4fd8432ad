"""One loaded module per model file (issue 14): Models, and so [unravel~] objects, of the same
file share it until one of them changes it (copy on write); streaming models share their
weights and compiled code, each with its own state."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from pdrun import Chain, render_patch, run_pd
from unravel.bend import Bender
from unravel.model import DEFAULT_MODEL, load_model

SR = 44100
LAYER = "decoder.net.0.weight"


def _out(m, x):
    return m.run("forward", x).numpy()


def test_models_of_one_file_share_its_module(quirk_models):
    a, b = load_model(quirk_models["plain"]), load_model(quirk_models["plain"])
    assert a.module is b.module and a.shared and b.shared


def test_models_made_at_once_share_one_load(quirk_models, monkeypatch):
    """Two Models of one file made at the same time on two threads (two live objects'
    control threads, the file read without the GIL; here a read made slow) share one load:
    the second waits for the first."""
    import threading
    import time
    from unravel import modelcache
    read = modelcache.read_module
    monkeypatch.setattr(modelcache, "read_module", lambda *a: (time.sleep(0.3), read(*a))[1])
    for name in ("plain", "streaming"):
        made: list = [None, None]
        threads = [threading.Thread(target=lambda i=i: made.__setitem__(
            i, load_model(quirk_models[name]))) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [m.shared for m in made] == [True, True], name
        assert made[0]._loaded is made[1]._loaded, name


def test_bend_copies_on_write_the_other_keeps_the_original(quirk_models):
    path = quirk_models["plain"]
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (1, 1, 4096)).astype(np.float32))
    a, b = load_model(path), load_model(path)
    ref = _out(b, x)
    Bender(a).bend("codec.encoder.weight", "offset", 0.3)
    assert a.module is not b.module and not a.shared and b.shared
    assert not np.array_equal(_out(a, x), ref)
    np.testing.assert_array_equal(_out(b, x), ref)
    c = load_model(path)                     # a new Model gets the untouched original
    assert c.module is b.module
    np.testing.assert_array_equal(_out(c, x), ref)
    a.reload()                               # back to the file: shared again
    assert a.module is b.module
    np.testing.assert_array_equal(_out(a, x), ref)


def test_set_attribute_copies_on_write(quirk_models):
    a, b = load_model(quirk_models["plain"]), load_model(quirk_models["plain"])
    a.set_attribute("temperature", [0.5])
    assert a.module is not b.module
    assert a.get_attribute("temperature") == [0.5] and b.get_attribute("temperature") == [1.0]


def test_streaming_models_share_weights_not_state(quirk_models):
    """A streaming model's caches are per-object state: each Model runs its own copy of the
    module (own buffers) with the same weight tensors; running one leaves the others' output
    as a private load's, and a bend copies on write."""
    path = quirk_models["streaming"]
    a, b = load_model(path), load_model(path)
    assert a.shared and b.shared and a.module is not b.module
    pa, pb = dict(a.module.named_parameters()), dict(b.module.named_parameters())
    assert pa and all(pa[n].data_ptr() == pb[n].data_ptr() for n in pa)
    ba, bb = dict(a.module.named_buffers()), dict(b.module.named_buffers())
    caches = [n for n in ba if n.endswith("cache")]
    assert caches and all(ba[n].data_ptr() != bb[n].data_ptr() for n in caches)
    plain = load_model(path, share=False)    # warmed up the same way, never shared
    assert not plain.shared
    rng = np.random.default_rng(2)
    for _ in range(3):
        z = torch.from_numpy(rng.standard_normal((1, 8, 3)).astype(np.float32))
        a.run("decode", torch.from_numpy(rng.standard_normal((1, 8, 3)).astype(np.float32)))
        np.testing.assert_array_equal(b.run("decode", z).numpy(), plain.run("decode", z).numpy())
    layer = next(iter(pa))
    Bender(a).bend(layer, "offset", 0.3)
    assert not a.shared and b.shared
    assert dict(a.module.named_parameters())[layer].data_ptr() != pb[layer].data_ptr()
    assert torch.equal(pb[layer], dict(plain.module.named_parameters())[layer])


def test_pd_objects_share_until_one_bends(tmp_path):
    """Three [unravel~ default forward] in one pd: the first bends (its own copy), the other
    two still share the original and play the backend's unbent output bit for bit."""
    x = np.random.default_rng(3).uniform(-0.5, 0.5, 16384).astype(np.float32)
    sf.write(tmp_path / "x.wav", x, SR, subtype="FLOAT")
    chains = [Chain("unravel~ default forward 2048", 1, 1, "x.wav", f"y{k}.wav",
                    extra=(f"bend {LAYER} offset 0.2",) if k == 0 else ()) for k in range(3)]
    r = run_pd(render_patch(tmp_path / "share.pd", chains, len(x)), args=["-r", str(SR)], timeout=120)
    assert r.returncode == 0 and r.errors == [], r.errors
    assert [r.after(f"info{k}: shared") for k in range(3)] == [["0"], ["1"], ["1"]]
    blocks = lambda m: np.concatenate([m.run("forward", torch.from_numpy(x[i:i + 2048])[None, None])[0, 0].numpy()
                                       for i in range(0, len(x), 2048)])   # as [unravel~] runs it
    ref = blocks(load_model(DEFAULT_MODEL))
    bent = load_model(DEFAULT_MODEL, share=False)
    Bender(bent).bend(LAYER, "offset", 0.2)
    ref_bent = blocks(bent)
    ys = [sf.read(tmp_path / f"y{k}.wav", dtype="float32")[0] for k in range(3)]
    L = 2048
    np.testing.assert_array_equal(ys[0][L:L + len(x)], ref_bent)
    for y in ys[1:]:
        np.testing.assert_array_equal(y[L:L + len(x)], ref)
    assert not np.array_equal(ref, ref_bent)


def test_pd_streaming_objects_share_weights_each_keeps_its_state(tmp_path, quirk_models):
    """Three [unravel~ STREAMING forward 2048] in one pd on three different inputs: all report
    'shared 1' (weights), and each plays what a private load of the model plays on its input
    (its own caches), bit for bit."""
    path = quirk_models["streaming"]
    rng = np.random.default_rng(4)
    xs = [rng.uniform(-0.5, 0.5, 16384).astype(np.float32) for _ in range(3)]
    for k, x in enumerate(xs):
        sf.write(tmp_path / f"x{k}.wav", x, SR, subtype="FLOAT")
    chains = [Chain(f"unravel~ {path} forward 2048", 1, 1, f"x{k}.wav", f"y{k}.wav") for k in range(3)]
    r = run_pd(render_patch(tmp_path / "stream.pd", chains, len(xs[0])), args=["-r", str(SR)], timeout=120)
    assert r.returncode == 0 and r.errors == [], r.errors
    assert [r.after(f"info{k}: shared") for k in range(3)] == [["1"], ["1"], ["1"]]
    L = 2048
    for k, x in enumerate(xs):
        private = load_model(path, share=False)
        ref = np.concatenate([private.run("forward", torch.from_numpy(x[i:i + L])[None, None])[0, 0].numpy()
                              for i in range(0, len(x), L)])
        y = sf.read(tmp_path / f"y{k}.wav", dtype="float32")[0]
        np.testing.assert_array_equal(y[L:L + len(x)], ref)


def test_save_keeps_a_shared_model_shared(tmp_path):
    """`save` of an object whose model another object shares writes the model as it is and
    copies nothing: both stay shared, and the file loads as the same model."""
    from unravel import bridge
    a, b = bridge.Session("default"), bridge.Session("default")
    assert a.model.shared and b.model.shared
    (reply,) = a.message("save", [str(tmp_path / "copy.ts")])
    assert reply == ["saved", str(tmp_path / "copy.ts")]
    assert a.model.shared and b.model.module is a.model.module
    x = torch.zeros(1, 1, 4096).uniform_(-1, 1)
    assert torch.equal(load_model(tmp_path / "copy.ts", share=False).run("forward", x),
                       a.model.run("forward", x))


@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_copy_on_write_copies_what_is_in_memory(tmp_path, change):
    """The model file replaced by another model, or deleted, after two Models loaded it:
    `bend` bends the model that plays (never what the file now holds), the other Model plays
    on, and a job of the shared one (in the job process) runs on the model in memory too."""
    import os
    import shutil
    from unravel import jobproc, pipeline
    path = tmp_path / "m.ts"
    shutil.copy(DEFAULT_MODEL, path)
    a, b = load_model(path), load_model(path)
    assert a.shared and b.shared
    x = torch.from_numpy(np.random.default_rng(4).uniform(-0.5, 0.5, (1, 1, 8192)).astype(np.float32))
    ref = _out(b, x)
    c = load_model(DEFAULT_MODEL, share=False)
    Bender(c).bend(LAYER, "offset", 0.2)
    ref_bent = _out(c, x)
    if change == "replaced":                     # another model under the same name
        shutil.copy(DEFAULT_MODEL.with_name("default4.ts"), tmp_path / "new.ts")
        os.replace(tmp_path / "new.ts", path)
    else:
        path.unlink()
    Bender(a).bend(LAYER, "offset", 0.2)
    np.testing.assert_array_equal(_out(a, x), ref_bent)
    np.testing.assert_array_equal(_out(b, x), ref)
    wav = tmp_path / "x.wav"
    sf.write(wav, x[0, 0].numpy(), SR, subtype="FLOAT")
    w = jobproc.Worker()
    try:
        w.run(b, "encode", ["input", str(wav), "output", str(tmp_path / "job")], str(tmp_path))
    finally:
        w.close()
    pipeline.encode_files(load_model(DEFAULT_MODEL), [wav], tmp_path / "here")
    assert (tmp_path / "job" / "x.npy").read_bytes() == (tmp_path / "here" / "x.npy").read_bytes()


@pytest.mark.parametrize("kind", ["delay", "counter"])
def test_models_sharing_a_file_never_hear_each_other(tmp_path, kind):
    """State that a silent warm-up does not reveal (a delay line in a buffer without bias, a
    counter in an int attribute) is found in the methods' graphs: each Model keeps its own,
    the weights are shared, and B next to A plays bit for bit what B alone plays."""
    from toymodels import make_state_leak_model
    from unravel import modelcache
    path = make_state_leak_model(tmp_path / f"{kind}.ts", kind)
    assert modelcache.written(torch.jit.load(str(path))._c, ["forward"]) == (
        {"line"} if kind == "delay" else {"calls"})
    a, b = load_model(path), load_model(path)
    alone = load_model(path, share=False)
    assert a.shared and b.shared and a.module is not b.module
    assert a.module.w.data_ptr() == b.module.w.data_ptr()
    t = np.arange(4 * 2048) / SR
    sine = torch.from_numpy((0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)).view(1, 1, -1)
    quiet = torch.from_numpy(np.random.default_rng(5).uniform(-0.01, 0.01, sine.shape).astype(np.float32))
    for i in range(0, sine.shape[-1], 2048):
        a.run("forward", sine[..., i:i + 2048])
        np.testing.assert_array_equal(b.run("forward", quiet[..., i:i + 2048]).numpy(),
                                      alone.run("forward", quiet[..., i:i + 2048]).numpy())


def test_graphs_tell_what_running_writes(quirk_models):
    """The quirk models: a streaming export writes its cache (the plain one has the same
    code behind a False flag: nothing), the bundled models nothing."""
    from unravel import modelcache
    for name, expect in (("plain", set()), ("streaming", {"codec.latent.cache"})):
        m = torch.jit.load(str(quirk_models[name]))
        assert modelcache.written(m._c, ["forward", "encode", "decode"]) == expect, name
    m = torch.jit.load(str(DEFAULT_MODEL))
    assert modelcache.written(m._c, ["forward", "encode", "decode"]) == set()


@pytest.mark.parametrize("kind", ["delay", "counter"])
def test_pd_objects_sharing_a_stateful_model_never_hear_each_other(tmp_path, kind):
    """Two [unravel~ LEAK forward 2048] in one pd: A plays a 220 Hz sine, B quiet noise; B
    plays bit for bit what a private load plays on its input (A's sine never reaches it),
    and both report 'shared 1' (the weight)."""
    from toymodels import make_state_leak_model
    path = make_state_leak_model(tmp_path / f"{kind}.ts", kind)
    n = 16384
    sine = (0.5 * np.sin(2 * np.pi * 220 * np.arange(n) / SR)).astype(np.float32)
    quiet = np.random.default_rng(6).uniform(-0.01, 0.01, n).astype(np.float32)
    sf.write(tmp_path / "a.wav", sine, SR, subtype="FLOAT")
    sf.write(tmp_path / "b.wav", quiet, SR, subtype="FLOAT")
    chains = [Chain(f"unravel~ {path} forward 2048", 1, 1, f"{s}.wav", f"y{s}.wav") for s in "ab"]
    r = run_pd(render_patch(tmp_path / "leak.pd", chains, n), args=["-r", str(SR)], timeout=120)
    assert r.returncode == 0 and r.errors == [], r.errors
    assert [r.after(f"info{k}: shared") for k in range(2)] == [["1"], ["1"]]
    L = 2048
    private = load_model(path, share=False)
    ref = np.concatenate([private.run("forward", torch.from_numpy(quiet[i:i + L])[None, None])[0, 0].numpy()
                          for i in range(0, n, L)])
    y = sf.read(tmp_path / "yb.wav", dtype="float32")[0]
    np.testing.assert_array_equal(y[L:L + n], ref)


@pytest.mark.parametrize("kind", ["delay", "counter", "streaming"])
def test_copy_on_write_keeps_the_state_reached_while_copying(tmp_path, kind, quirk_models, monkeypatch):
    """A Model with its own state (a delay line, a counter, streaming caches) copies on write
    outside its lock (from the template, which never runs), then takes the state it reached
    meanwhile between two calls: a block run during the copy is not lost, and the Model goes
    on bit for bit as a private load fed the same blocks."""
    from toymodels import make_state_leak_model
    from unravel import modelcache
    path = quirk_models["streaming"] if kind == "streaming" else make_state_leak_model(tmp_path / f"{kind}.ts", kind)
    method, shape = ("decode", (1, 8, 4)) if kind == "streaming" else ("forward", (1, 1, 2048))
    a, b = load_model(path), load_model(path)
    alone = load_model(path, share=False)
    assert a.shared and a._loaded.template is not None
    rng = np.random.default_rng(9)
    blocks = [torch.from_numpy(rng.uniform(-0.5, 0.5, shape).astype(np.float32)) for _ in range(5)]
    for x in blocks[:2]:
        a.run(method, x)
        alone.run(method, x)
    copy = modelcache.jit_copy

    def copy_while_playing(cmod):
        c = copy(cmod)
        a.run(method, blocks[2])             # the model thread goes on during the copy
        return c
    monkeypatch.setattr(modelcache, "jit_copy", copy_while_playing)
    a.own()
    monkeypatch.setattr(modelcache, "jit_copy", copy)
    alone.run(method, blocks[2])
    assert not a.shared and b.shared
    for x in blocks[3:]:
        np.testing.assert_array_equal(a.run(method, x).numpy(), alone.run(method, x).numpy())
