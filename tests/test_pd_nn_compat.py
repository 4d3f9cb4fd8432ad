"""A patch written the way nn~'s help patch and the nn~ bending fork's patches use [nn~] works
after renaming the object to [unravel~]; the bundled help patch opens without errors."""

from __future__ import annotations

import os
import shutil

import pytest

from pdrun import BUILD, Patch, run_pd
from unravel.model import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")


def nn_patch() -> str:
    """nn~ usage: forward, encode -> 8 latents -> decode, enable toggle, reload, set/get,
    and the bending fork's layers / get_weights / set_weights with [route]."""
    p = Patch()
    lb = p.obj("loadbang")
    osc = p.obj("osc~ 110")
    fwd = p.obj("nn~ rave.ts forward 2048")
    enc = p.obj("nn~ rave.ts encode 2048")
    dec = p.obj("nn~ rave.ts decode 2048")
    dac = p.obj("dac~")
    p.connect(osc, 0, fwd, 0)
    p.connect(osc, 0, enc, 0)
    for c in range(8):
        p.connect(enc, c, dec, c)
    p.connect(fwd, 0, dac, 0)
    p.connect(dec, 0, dac, 1)
    # nn~'s other spellings: -gpu, -m with the info outlet, a bufsize that is no power of two
    gpu = p.obj("nn~ -gpu rave.ts forward 3000")
    p.connect(osc, 0, gpu, 0)
    mc = p.obj("nn~ -m rave.ts encode")
    p.connect(osc, 0, mc, 0)
    mcdim = p.obj("print mcinfo")
    p.connect(mc, 1, mcdim, 0)
    env = p.obj("env~ 4096")
    p.connect(dec, 0, env, 0)
    envmax = p.obj("max")
    p.connect(env, 0, envmax, 0)
    p.connect(envmax, 0, envmax, 1)
    tgl = p.obj("tgl 15 0 empty empty empty 17 7 0 10 #fcfcfc #000000 #000000 0 1")
    en = p.msg("enable $1")
    p.connect(tgl, 0, en, 0)
    p.connect(en, 0, fwd, 0)
    rl = p.msg("reload")
    p.connect(rl, 0, fwd, 0)
    st = p.msg("set temperature 0.8")
    p.connect(st, 0, dec, 0)
    gt = p.msg("get temperature")
    p.connect(gt, 0, dec, 0)
    # bending fork: layers, get_weights -> [route layer] -> scale -> set_weights
    p.connect(p.obj("loadbang"), 0, mc, 0)      # bang: nn~ -m answers dim in out
    ly = p.msg("layers")
    p.connect(ly, 0, dec, 0)
    gw = p.msg("get_weights decoder.net.10.bias")
    p.connect(gw, 0, dec, 0)
    route = p.obj("route layers layer attribute")
    p.connect(dec, 1, route, 0)     # decode: 1 signal outlet, then the info outlet
    back = p.msg("set_weights decoder.net.10.bias $1 $2 $3 $4 $5 $6 $7 $8 $9 $10 $11 $12 $13 $14 $15 $16")
    p.connect(route, 1, back, 0)
    p.connect(back, 0, dec, 0)
    pl = p.obj("print layers")
    p.connect(route, 0, pl, 0)
    pa = p.obj("print attr")
    p.connect(route, 2, pa, 0)
    seq = p.obj("t b b b b b b b b")
    p.connect(lb, 0, seq, 0)
    dsp = p.msg("; pd dsp 1")
    p.connect(seq, 7, dsp, 0)
    one = p.msg("1")
    p.connect(seq, 6, one, 0)
    p.connect(one, 0, tgl, 0)
    p.connect(seq, 5, rl, 0)
    p.connect(seq, 4, st, 0)
    p.connect(seq, 3, gt, 0)
    p.connect(seq, 2, ly, 0)
    p.connect(seq, 1, gw, 0)
    dl = p.obj("delay 2000")
    p.connect(seq, 0, dl, 0)
    fin = p.obj("t b b")
    p.connect(dl, 0, fin, 0)
    pe = p.obj("print env")
    p.connect(fin, 1, envmax, 0)
    p.connect(envmax, 0, pe, 0)
    q = p.msg("; pd quit")
    p.connect(fin, 0, q, 0)
    return "\n".join(ln if ln.endswith(";") else ln + ";" for ln in
                     ["#N canvas 0 50 900 700 12"] + [x for x in p.lines if not x.startswith("#X connect")]
                     + [x for x in p.lines if x.startswith("#X connect")]) + "\n"


def test_nn_patch_works_after_renaming(tmp_path):
    os.symlink(DEFAULT_MODEL, tmp_path / "rave.ts")
    text = nn_patch().replace("nn~ ", "unravel~ ")
    (tmp_path / "nn_help.pd").write_text(text)
    r = run_pd(tmp_path / "nn_help.pd", timeout=60)
    assert r.returncode == 0
    assert r.errors == [], r.errors
    assert r.after("attr:") == ["temperature 0.8"]
    assert "dim 1 8" in r.after("mcinfo:")
    assert r.after("layers:")[0].split()[:2] == ["pqmf.weight", "encoder.net.0.weight"]
    env = float(r.after("env:")[-1])        # the running maximum
    assert env > 10, "the encode -> decode chain should make sound (dB)"


def test_help_patch_opens_without_errors(tmp_path):
    help_patch = BUILD / "unravel~-help.pd"
    assert help_patch.exists(), "pd/unravel~-help.pd is copied into build/unravel by make setup"
    # open it, let its loadbangs run, quit
    shutil.copy(help_patch, tmp_path / "unravel~-help.pd")
    (tmp_path / "main.pd").write_text(
        "#N canvas 0 50 450 300 12;\n#X obj 10 10 loadbang;\n#X obj 10 40 delay 3000;\n"
        "#X msg 10 70 \\; pd quit;\n#X connect 0 0 1 0;\n#X connect 1 0 2 0;\n")
    r = run_pd(tmp_path / "main.pd", args=["-open", str(tmp_path / "unravel~-help.pd")], timeout=90)
    assert r.returncode == 0
    assert r.errors == [], r.errors
    assert any("[unravel~]" in ln for ln in r.lines)
