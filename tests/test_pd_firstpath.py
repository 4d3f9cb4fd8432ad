"""The first path (native/firstpath.h): a live [unravel~] plays its model through libtorch
alone from Pd's start, before Python has imported torch, and the load's runner takes over at
a block boundary. Real-time Pd (not -batch), the bundled model, which is stateless: every
block of a constant input gives the same output, whichever path runs it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdrun import BUILD, Patch, run_pd
from unravel.archive import resolve_model

B = 2048
LEVEL = 0.25

pytestmark = pytest.mark.skipif(not (BUILD / "unravel_first.so").exists(),
                                reason="unravel_first.so was not built (see build/firstpath.log)")


def patch(d, second: bool = False, by_message: bool = False):
    """[sig~ LEVEL] -> [unravel~ default forward B] (with `by_message`: an empty [unravel~]
    sent `load default` at load); prints "first: bang" at its first non-silent envelope and
    records 4096 samples from there into first.txt; prints "loaded: ..." when the load's
    runner plays and records 4096 samples 300 ms later into after.txt (with `second`, a
    second such object's too, into second.txt); quits."""
    p = Patch()
    lb = p.obj("loadbang")
    on = p.msg("; pd dsp 1")
    p.connect(lb, 0, on, 0)
    src = p.obj(f"sig~ {LEVEL}")
    u = p.obj("unravel~" if by_message else f"unravel~ default forward {B}")
    p.connect(src, 0, u, 0)
    if by_message:
        load = p.msg("load default")
        p.connect(lb, 0, load, 0)
        p.connect(load, 0, u, 0)
    names = ("first", "after", "second") if second else ("first", "after")
    for name in names:
        p.obj(f"table {name} 4096")
    _, heard = p.first_sound(u)
    t = p.obj("t b b")
    p.connect(heard, 0, t, 0)
    pr = p.obj("print first")
    p.connect(t, 1, pr, 0)
    rec_first = p.obj("tabwrite~ first")
    p.connect(t, 0, rec_first, 0)
    p.connect(u, 0, rec_first, 0)
    loaded = p.obj("route loaded")
    p.connect(u, 1, loaded, 0)
    pl = p.obj("print loaded")
    p.connect(loaded, 0, pl, 0)
    bang = p.obj("t b")
    p.connect(loaded, 0, bang, 0)
    wait = p.obj("delay 300")
    p.connect(bang, 0, wait, 0)
    rec_after = p.obj("tabwrite~ after")
    p.connect(wait, 0, rec_after, 0)
    p.connect(u, 0, rec_after, 0)
    if second:
        u2 = p.obj(f"unravel~ default forward {B}")
        p.connect(src, 0, u2, 0)
        rec_second = p.obj("tabwrite~ second")
        p.connect(wait, 0, rec_second, 0)
        p.connect(u2, 0, rec_second, 0)
    done = p.obj("delay 300")
    p.connect(wait, 0, done, 0)
    save = p.msg("; " + "; ".join(f"{n} write {d / (n + '.txt')}" for n in names) + "; pd quit")
    p.connect(done, 0, save, 0)
    return p.write(d / "first.pd")


def expected() -> np.ndarray:
    """One block of the bundled model's forward on the constant input, through Python."""
    m = torch.jit.load(str(resolve_model("default")))
    with torch.inference_mode():
        return m.forward(torch.full((1, 1, B), LEVEL)).numpy()[0, 0]


def matches(rec: np.ndarray, block: np.ndarray) -> bool:
    """Some whole block in `rec` is `block` (to float rounding)."""
    return min(float(np.abs(rec[k:k + B] - block).max()) for k in range(len(rec) - B + 1)) < 1e-5


def test_it_plays_the_model_before_torch_is_imported_and_hands_over(tmp_path):
    r = run_pd(patch(tmp_path), batch=False, timeout=60)
    assert r.returncode == 0 and not r.errors, r.lines[-20:]
    order = [ln.split(":")[0] for ln in r.lines if ln.startswith(("first:", "loaded:"))]
    assert order == ["first", "loaded"], r.lines[-20:]    # sound before the Python runner
    block = expected()
    assert np.abs(block).max() > 1e-3
    first = np.loadtxt(tmp_path / "first.txt")
    after = np.loadtxt(tmp_path / "after.txt")
    assert matches(first, block)    # the first path runs the model itself
    assert matches(after, block)    # and the runner that took over plays on


def test_a_load_message_to_an_empty_object_plays_before_torch_is_imported(tmp_path):
    """[unravel~] made empty and sent `load default` at load (nn~'s way): the same first path
    (its own buffer size, 4096: the order and the sound are checked, not the waveform)."""
    r = run_pd(patch(tmp_path, by_message=True), batch=False, timeout=60)
    assert r.returncode == 0 and not r.errors, r.lines[-20:]
    order = [ln.split(":")[0] for ln in r.lines if ln.startswith(("first:", "loaded:"))]
    assert order == ["first", "loaded"], r.lines[-20:]
    assert np.abs(np.loadtxt(tmp_path / "after.txt")).max() > 1e-3


def test_without_it_the_object_is_silent_until_the_load(tmp_path):
    r = run_pd(patch(tmp_path), batch=False, timeout=60, env={"UNRAVEL_FIRSTPATH": "0"})
    assert r.returncode == 0 and not r.errors, r.lines[-20:]
    order = [ln.split(":")[0] for ln in r.lines if ln.startswith(("first:", "loaded:"))]
    assert order == ["loaded", "first"], r.lines[-20:]


def test_two_objects_of_one_model_both_play(tmp_path):
    """One first path per model file: the second object waits for its load; both play the
    model once it is loaded."""
    r = run_pd(patch(tmp_path, second=True), batch=False, timeout=60)
    assert r.returncode == 0 and not r.errors, r.lines[-20:]
    block = expected()
    assert matches(np.loadtxt(tmp_path / "first.txt"), block)
    assert matches(np.loadtxt(tmp_path / "after.txt"), block)
    assert matches(np.loadtxt(tmp_path / "second.txt"), block)


@pytest.mark.parametrize("behave", ["raise", "shape", "nan"])
def test_a_model_the_first_path_cannot_play_says_what_it_said_before(tmp_path, behave):
    """A model that fails, returns a 2-D tensor or NaN: the first path gives up in silence,
    and Pd prints the same error lines as without it, and quits."""
    from toymodels import make_hostile_model
    model = make_hostile_model(tmp_path / f"{behave}.ts", (1, 1, 1, 1), behave)
    p = Patch()
    lb = p.obj("loadbang")
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    u = p.obj(f"unravel~ {model} forward {B}")
    p.connect(p.obj("noise~"), 0, u, 0)
    q = p.obj("delay 3000")
    p.connect(lb, 0, q, 0)
    p.connect(q, 0, p.msg("; pd quit"), 0)
    patch = p.write(tmp_path / "hostile.pd")
    lines = {}
    for first in ("1", "0"):
        r = run_pd(patch, batch=False, timeout=60, env={"UNRAVEL_FIRSTPATH": first})
        assert r.returncode == 0, r.lines[-10:]
        lines[first] = sorted({ln for ln in r.errors if "has not answered" not in ln})
    assert lines["1"] == lines["0"] and lines["1"], lines
