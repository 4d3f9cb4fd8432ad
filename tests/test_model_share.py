"""One loaded module per model file (issue 14): Models, and so [unravel~] objects, of the same
file share it until one of them changes it (copy on write); streaming models never share."""

from __future__ import annotations

import numpy as np
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


def test_streaming_models_are_never_shared(quirk_models):
    """Their caches are per-object state (the warm-up changes them); state as before."""
    path = quirk_models["streaming"]
    a, b = load_model(path), load_model(path)
    assert a.module is not b.module and not a.shared and not b.shared
    z = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 8, 3)).astype(np.float32))
    plain = load_model(path, share=False)    # warmed up, never probed
    np.testing.assert_array_equal(a.run("decode", z).numpy(), plain.run("decode", z).numpy())


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
