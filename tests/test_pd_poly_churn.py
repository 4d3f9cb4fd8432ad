"""Voices under churn (issue 24): in real-time Pd, four `-p` objects of one streaming model
play while messages keep changing their groups (`poly 0/1`, `bend`, `restore`, `enable`,
`bufsize`, `reload`) and objects are made and deleted in a subpatch, every few blocks for 4 s.
Pd must not crash or hang, print no error, and at the end every object must answer `bang`
with its status, the groups must be what the messages left (the bent one alone, the others
together) and every object must play (its input is noise)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, Patch, run_pd
from toymodels import make_voice_model

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

N = 4
OBJ = "unravel~ -p vfir.ts forward 256"
DYN = f"; pd-dyn obj 10 10 {OBJ}"   # joins the group at its first block (silence in)
# (ms after the objects loaded, message): each change lands while rounds run
SCRIPT = [(200, "; c0 poly 0"), (260, DYN), (300, "; c1 bend fir.weight spread 0.5"),
          (340, "; c0 poly 1"), (400, "; c2 enable 0"), (450, DYN), (520, "; c3 bufsize 512"),
          (600, "; pd-dyn clear"), (640, "; c2 enable 1"), (700, "; c1 restore"),
          (760, "; c3 bufsize 256"), (800, DYN), (820, "; c0 reload"), (900, "; c2 poly 0"),
          (950, "; pd-dyn clear"), (1000, "; c2 poly 1"), (1100, "; c1 bend fir.weight offset 0.1"),
          (1150, DYN), (1200, "; c3 enable 0"), (1210, "; c3 enable 1"), (1300, "; pd-dyn clear")]
SCRIPT += [(t + 1400, m) for t, m in SCRIPT]       # twice
PLAY_MS = 3200       # then record the last 0.2 s of each object, ask its status, quit


def _patch(d) -> None:
    p = Patch()
    lb = p.obj("loadbang")
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    p.obj("pd dyn")
    count, sel = p.count(N)
    start = p.obj("t b")
    p.connect(sel, 0, start, 0)
    for t, msg in SCRIPT:
        dl = p.obj(f"delay {t}")
        p.connect(start, 0, dl, 0)
        p.connect(dl, 0, p.msg(msg), 0)
    rec, fin = p.obj(f"delay {PLAY_MS}"), p.obj(f"delay {PLAY_MS + 300}")
    p.connect(start, 0, rec, 0)
    p.connect(start, 0, fin, 0)
    quit_ = p.obj("delay 200")
    p.connect(fin, 0, quit_, 0)
    p.connect(quit_, 0, p.msg("; pd quit"), 0)
    st = p.obj("print st")
    for k in range(N):
        p.obj(f"table out{k} 8192")
        noise, u = p.obj("noise~"), p.obj(OBJ)
        p.connect(noise, 0, u, 0)
        p.connect(p.obj(f"r c{k}"), 0, u, 0)
        loaded = p.obj("route loaded")
        p.connect(u, 1, loaded, 0)
        p.connect(loaded, 0, p.obj("t b"), 0)
        p.connect(p.n - 1, 0, count, 0)
        tw = p.obj(f"tabwrite~ out{k}")
        p.connect(u, 0, tw, 0)
        p.connect(rec, 0, tw, 0)
        ask = p.obj("t b b")
        p.connect(fin, 0, ask, 0)
        p.connect(ask, 1, p.msg(f"k{k}"), 0)
        p.connect(p.n - 1, 0, st, 0)
        p.connect(ask, 0, u, 0)
        p.connect(u, 1, st, 0)
        wr = p.msg(f"write -wave -bytes 4 out{k}.wav out{k}")
        p.connect(fin, 0, wr, 0)
        p.connect(wr, 0, p.obj("soundfiler"), 0)
    p.write(d / "churn.pd")
    # the subpatch's objects come and go: write it as a canvas inside the patch
    text = (d / "churn.pd").read_text().replace("#X obj 10 40 pd dyn;", "#N canvas 0 50 450 300 dyn 0;\n#X restore 10 40 pd dyn;")
    (d / "churn.pd").write_text(text)


def test_poly_objects_survive_churn(tmp_path):
    make_voice_model(tmp_path / "vfir.ts")
    _patch(tmp_path)
    r = run_pd(tmp_path / "churn.pd", args=["-r", "44100"], batch=False, timeout=90)
    loaded = next(i for i, ln in enumerate(r.lines + ["loaded model"]) if "loaded model" in ln)
    errors = [ln for ln in r.errors if "has not answered" not in ln or r.lines.index(ln) > loaded]
    assert r.returncode == 0 and errors == [], (r.returncode, errors, r.lines[-10:])
    for k in range(N):
        after = r.lines[r.lines.index(f"st: k{k}"):]
        assert any(ln.startswith("st: mode live") for ln in after), (k, after[:12])
        # the bent one plays alone; the three others (reloaded, poly off and on, disabled
        # and enabled) are in one group again, the deleted objects gone from it
        poly = next(ln.split()[2:4] for ln in after if ln.startswith("st: poly"))
        assert poly == (["1", "0"] if k == 1 else ["1", "3"]), (k, poly)
        out = sf.read(tmp_path / f"out{k}.wav", dtype="float32")[0]
        assert np.abs(out).max() > 0.01, (k, "silent")
