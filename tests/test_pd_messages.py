"""Every message of unravel~-help.pd with right and wrong arguments: the reply, or exactly one
error line; Pd exits normally. All cases run in one Pd process, DSP on, separated by marks."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, Patch, run_pd

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

BIAS = "encoder.net.10.bias"        # 8 weights in the bundled default model
# (message, expectation): "reply <prefix>" = info line(s) starting so and no error,
# "ok" = no error and no reply, "error" = exactly one error line and no reply, "post <line>"
# = no error and exactly one line '[unravel~]: <line>' in Pd's window (issue 25:
# every message that changes state says so in one line)
CASES = [
    ("bang", "reply loaded 1"),
    ("get_weights decoder.net.10.bias", "reply layer"),            # ORIGINAL (see below)
    ("enable 0", "ok"), ("enable 1", "ok"), ("enable foo", "error"),
    ("get temperature", "reply attribute temperature 1"),
    ("set temperature 0.5", "ok"), ("get temperature", "reply attribute temperature 0.5"),
    ("set temperature 1", "ok"),
    ("get", "error"), ("get nothing", "error"), ("get 3", "error"),
    ("set temperature", "error"), ("set temperature abc", "error"), ("set nothing 1", "error"),
    ("set temperature -1", "error"),
    ("layers", "reply layers pqmf.weight encoder.net.0.weight"), ("layers 1", "error"),
    (f"get_weights {BIAS}", "reply layer"),
    (f"get_weights {BIAS} warr", "ok"), ("; warrsize bang", "reply wsize: 8"),
    ("get_weights", "error"), ("get_weights nope", "error"), (f"get_weights {BIAS} noarray", "error"),
    ("get_weights 12", "error"),
    (f"layer_stats {BIAS}", f"reply layer_stats {BIAS} 8 "), ("layer_stats", "error"),
    ("layer_stats nope", "error"), (f"layer_stats {BIAS} 1", "error"),
    (f"set_weights {BIAS} 1 2 3 4 5 6 7 8", f"post set_weights {BIAS}: 8 weights"),
    (f"get_weights {BIAS}", "reply layer 1 2 3 4 5 6 7 8"),
    (f"set_weights {BIAS} wsrc", f"post set_weights {BIAS}: 8 weights"),
    (f"get_weights {BIAS}", "reply layer 0.5 0.5 0.5 0.5 0.5 0.5 0.5 0.5"),
    (f"set_weights {BIAS} 1 2", "error"),
    (f"get_weights {BIAS}", "reply layer 0.5 0.5 0.5 0.5 0.5 0.5 0.5 0.5"),   # nothing written
    (f"set_weights {BIAS} " + " ".join(["1"] * 9), "error"),
    (f"set_weights {BIAS} wlong", "error"), (f"set_weights {BIAS} noarray", "error"),
    (f"set_weights {BIAS} a b c", "error"), ("set_weights nope 1", "error"), ("set_weights", "error"),
    ("bend decoder.net.2.weight offset 0.05", "post bend decoder.net.2.weight offset 0.05: 65536 weights"),
    ("bend decoder.net.2.weight spread 2 50", "post bend decoder.net.2.weight spread 2: 32768 weights"),
    ("bend decoder.net.2.weight randomize 200", "ok"), ("bend decoder.net.2.weight invert 1", "ok"),
    ("bend decoder.net.2.weight zero 1 10", "ok"),
    ("bend nope offset 1", "error"), ("bend decoder.net.2.weight wobble 1", "error"),
    ("bend decoder.net.2.weight offset", "error"), ("bend decoder.net.2.weight offset 0.1 0", "error"),
    ("bend decoder.net.2.weight offset x", "error"), ("bend", "error"),
    ("bend decoder.net.10.bias offset 0.1", "post bend decoder.net.10.bias offset 0.1: 16 weights"),
    ("get_weights decoder.net.10.bias", "reply layer"),            # BENT
    ("restore decoder.net.2.weight", "post restored decoder.net.2.weight"),
    ("restore", "post restored 3 layers"), ("restore nope", "error"),
    ("get_weights decoder.net.10.bias", "reply layer"),            # RESTORED
    ("restore a b", "error"),
    ("save bent.ts", "reply saved"), ("save", "error"), ("save /nonexistent/dir/x.ts", "error"),
    ("reload", "post reloaded default.ts"), (f"get_weights {BIAS}", "reply layer"), ("reload 1", "error"),
    ("bufsize 4096", "post bufsize 4096 (mode sync)"), ("bufsize 0", "post bufsize 0 (mode inline)"),
    ("bufsize 2048", "post bufsize 2048 (mode sync)"),
    # as nn~ (issue 10): any size is rounded to a power of two >= the ratio, with a post
    ("bufsize 1000", "ok"), ("bufsize 1024", "ok"), ("bufsize foo", "error"), ("bufsize", "error"),
    ("bufsize -4096", "error"), ("bufsize 1000.5", "error"),
    ("method encode", "post warning: method 'encode' takes 1 and gives 8 channels; "),  # its note
    ("method forward", "post method forward (dim 1 1, ratio 1 1)"), ("method nope", "ok"),      # as nn~: a post, then forward ("method", "error"),
    ("method 1", "error"),
    ("load default4", "reply loaded"), ("load default", "post loaded model "), ("load nonexistent_model", "error"),
    ("load notamodel.wav", "error"), ("load notamodel", "error"), ("load", "error"), ("load 1 2", "error"),
    ("sync 0", "post sync 0 (mode live)"), ("sync 1", "post sync 1 (mode sync)"), ("sync", "error"), ("sync x", "error"),
    ("gpu 1", "ok"), ("gpu 0", "ok"), ("gpu x", "error"),       # nn~'s: a post on a CPU build
    ("foo", "error"), ("foo 1 2", "error"),
    ("bang", "reply latency 2048"),
]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    d = tmp_path_factory.mktemp("pdmsg")
    sf.write(d / "notamodel.wav", np.zeros(100, np.float32), 44100)
    (d / "notamodel.ts").write_text("not a model\n")
    p = Patch()
    lb = p.obj("loadbang")
    r = p.obj("r u")
    u = p.obj("unravel~ default forward 2048")
    info = p.obj("print info")
    p.connect(r, 0, u, 0)
    p.connect(u, 1, info, 0)
    p.connect(p.obj("r mark"), 0, p.obj("print mark"), 0)
    p.obj("table warr 3")
    p.obj("table wsrc 8")
    p.obj("table wlong 9")
    ws = p.obj("r warrsize")
    asz = p.obj("array size warr")
    p.connect(ws, 0, asz, 0)
    p.connect(asz, 0, p.obj("print wsize"), 0)
    osc = p.obj("osc~ 220")          # DSP runs through the object while messages arrive
    p.connect(osc, 0, u, 0)
    init = p.msg("; wsrc const 0.5; pd dsp 1")
    p.connect(lb, 0, init, 0)
    # half the cases in the loadbang tick, the rest later with DSP running
    half = len(CASES) // 2
    for part, cases in enumerate((CASES[:half], CASES[half:])):
        text = ""
        for i, (m, _) in enumerate(cases):
            k = i + part * half
            text += f"; mark c{k}; " + (m[2:] if m.startswith("; ") else "u " + m)
        if part == 1:
            text += "; mark end; pd quit"
        box = p.msg(text)
        dl = p.obj(f"delay {10 + 200 * part}")
        p.connect(lb, 0, dl, 0)
        p.connect(dl, 0, box, 0)
    patch = p.write(d / "messages.pd")
    return run_pd(patch, args=["-r", "44100"], timeout=120)


def _sections(lines: list[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    cur = None
    for ln in lines:
        if ln.startswith("mark: c"):
            cur = int(ln.split()[1][1:])
            out[cur] = []
        elif ln.startswith("mark: end"):
            cur = None
        elif cur is not None:
            out[cur].append(ln)
    return out


def test_pd_exits_normally(result):
    assert result.returncode == 0
    assert "mark: end" in result.lines
    before = result.lines[:result.lines.index(next(ln for ln in result.lines if ln.startswith("mark:")))]
    assert [ln for ln in before if ln.startswith("error")] == []


def test_no_python_warnings(result):
    """No Python warning (e.g. torch's about a read-only array from set_weights) in Pd's output."""
    assert [ln for ln in result.lines if "Warning:" in ln] == []


@pytest.mark.parametrize("k", range(len(CASES)), ids=[f"{i}:{m[:40]}" for i, (m, _) in enumerate(CASES)])
def test_message(result, k):
    msg, expect = CASES[k]
    lines = _sections(result.lines).get(k)
    assert lines is not None, f"case {k} never ran"
    errors = [ln for ln in lines if ln.startswith("error") or "couldn't" in ln]
    replies = [ln for ln in lines if ln.startswith("info:") or ln.startswith("wsize:")]
    if expect == "error":
        assert len(errors) == 1, lines
        assert replies == [], lines
        assert "[unravel~]" in errors[0] or "unravel~" in errors[0]
    elif expect == "ok":
        assert errors == [] and replies == [], lines
    elif expect.startswith("post "):
        posts = [ln[len("[unravel~]: "):] for ln in lines if ln.startswith("[unravel~]: ")]
        assert errors == [] and len(posts) == 1, lines
        assert posts[0].startswith(expect[5:]) if expect.endswith(" ") else posts[0] == expect[5:], lines
    else:
        prefix = expect.split(" ", 1)[1]
        assert errors == [], lines
        if not prefix.startswith("wsize"):
            prefix = "info: " + prefix
        assert any(ln.startswith(prefix) for ln in replies), (prefix, lines)


def test_layer_stats_are_numpys(result):
    """layer_stats: size, min, max, mean and std of the layer's weights, as numpy computes
    them (Pd prints 6 digits)."""
    from unravel.bend import Bender
    from unravel.model import load_model
    k = [m for m, _ in CASES].index(f"layer_stats {BIAS}")
    [line] = [ln for ln in _sections(result.lines)[k] if ln.startswith("info: layer_stats")]
    got = [float(v) for v in line.split()[3:]]
    w = Bender(load_model("default", warmup=False)).get_weights(BIAS).astype(np.float64)
    assert got[0] == w.size
    assert got[1:] == pytest.approx([w.min(), w.max(), w.mean(), w.std()], rel=1e-5)


def test_gpu_with_a_symbol_gets_our_usage_line(result):
    k = [m for m, _ in CASES].index("gpu x")
    errors = [ln for ln in _sections(result.lines)[k] if ln.startswith("error")]
    assert errors == ["error: [unravel~]: gpu: usage: gpu 0|1"], errors


def test_bend_then_restore_gives_the_original_back(result):
    sec = _sections(result.lines)
    idx = [k for k, (m, _) in enumerate(CASES) if m == "get_weights decoder.net.10.bias"]
    original, bent, restored = ([ln for ln in sec[k] if ln.startswith("info: layer")][0] for k in idx)
    assert len(original.split()) == 2 + 16
    assert bent != original
    assert restored == original


# A job and two control messages that only Python names (no C code does): the embedded
# Python and the job process both run this sitecustomize (PYTHONPATH), before Pd's first
# message reaches the bridge.
SITE = '''"""test_pd_messages: a job and control messages added in Python only."""
import warnings

# the job process is `python -m unravel.jobproc`, which the bridge imported here already
warnings.filterwarnings("ignore", message=".*found in sys.modules.*")

from unravel import bridge, jobs
from unravel.settings import Option, Spec


@jobs.job(Spec("twice", "doubles x", (Option("x", "float", default=0.0),)))
def _twice(model, s, patch_dir, arrays):
    return [2 * s.x]


bridge.Session.msg_hello = lambda self, args: [["hello", *args]]
bridge.Session.msg_oops = lambda self, args: [["error", "oops: said by Python"]]
'''


@pytest.mark.parametrize("mode", ["sync", "live"])
def test_python_owns_the_message_table(tmp_path, mode):
    """Every selector that C does not handle goes where `bridge.routes()` says: a job
    registered in Python only runs and replies `done`; a control message added to Session
    replies; a reply `error <line>` is one error line; each of the routes' jobs and registry
    messages is taken as one (its own argument error, no model needed for the registry);
    an unknown selector is one error line. Sync: the first message finds the bridge not yet
    imported (Pd's thread imports it); live: the messages sent while the first model loads
    find their route on the control thread, in order."""
    from unravel import bridge
    routes = bridge.routes()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE)
    flag = "-live " if mode == "live" else ""
    p = Patch()
    lb = p.obj("loadbang")
    empty = p.obj(f"unravel~ {flag}".strip())
    p.connect(empty, 1, p.obj("print empty"), 0)
    model = p.obj(f"unravel~ {flag}" + ("default" if mode == "live" else ""))
    p.connect(model, 1, p.obj("print info"), 0)
    seq = p.obj("t b b b")
    p.connect(lb, 0, seq, 0)
    bad = ", ".join(f"{name} 1 2 3" for name in routes["registry"])
    m_empty = p.msg(f"twice x 2, foo, {bad}")
    p.connect(seq, 2, m_empty, 0)
    p.connect(m_empty, 0, empty, 0)
    first = "" if mode == "live" else "load default, "
    jobs = ", ".join(f"{name} nope 1" for name in routes["jobs"])
    m_model = p.msg(f"{first}hello 1 a, oops, foo, {jobs}, twice x 2")
    p.connect(seq, 1, m_model, 0)
    p.connect(m_model, 0, model, 0)
    # quit once the last job replied
    done = p.obj("route done")
    p.connect(model, 1, done, 0)
    twice = p.obj("route twice")
    p.connect(done, 0, twice, 0)
    dl = p.obj("delay 50")
    p.connect(twice, 0, dl, 0)
    p.connect(dl, 0, p.msg("; pd quit"), 0)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    r = run_pd(p.write(tmp_path / "routes.pd"), env=env, timeout=180)
    assert r.returncode == 0, r.lines[-20:]
    assert "done twice 4" in r.after("info:"), r.lines
    assert "hello 1 a" in r.after("info:"), r.lines
    mine = [ln.split("[unravel~]: ", 1)[1] for ln in r.errors if "[unravel~]: " in ln]
    assert len(mine) == len(r.errors), r.errors
    nomodel = "no model loaded (use 'load <model>')"
    expected = [f"twice: {nomodel}", f"foo: {nomodel}", "oops: said by Python", "foo: unknown message"]
    assert sorted(e for e in mine if e in expected) == sorted(expected), mine
    for name in routes["registry"]:
        assert len([e for e in mine if e.startswith(f"{name}: usage:")]) == 1, (name, mine)
        assert any(ln.startswith(f"error {name} ") for ln in r.after("empty:")), (name, r.lines)
    for name in routes["jobs"]:
        assert len([e for e in mine if e.startswith(f"{name}: unknown option 'nope'")]) == 1, (name, mine)
        assert any(ln.startswith(f"error {name} ") for ln in r.after("info:")), (name, r.lines)
    assert len(mine) == len(expected) + len(routes["registry"]) + len(routes["jobs"]), mine
