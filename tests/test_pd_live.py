"""Live means live (issue 20): in real-time Pd (`pd -nogui -nosound`) nothing a message does
stops Pd's audio. Every message returns at once on Pd's thread, a `load` lands at a block
boundary of the model thread, an edit never lands during a model call, and a model call that
never returns leaves Pd answering and able to quit. Under -batch renders with loads and bends
stay bit-identical."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, Patch, run_live, run_pd
from toymodels import make_hostile_model

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

MSG_MS = 5          # the most a message may take on Pd's thread
GAP_MS = 25         # the largest gap between two DSP ticks


def test_load_and_bends_during_dsp_never_stall_pd(tmp_path):
    """`load` of another model, the first bend (copy on write of a shared model), a burst of
    bends, `save`, `reload`: each returns within 5 ms on Pd's thread, no DSP tick waits
    25 ms, and the load's reply `loaded <path>` comes once the new model plays."""
    msgs = [(0, "load default4"), (2000, "bend decoder.net.2.weight offset 0.1"),
            (2000, "bend decoder.net.2.weight offset 0.2, bend decoder.net.2.weight offset 0.3"),
            (2000, f"save {tmp_path / 'bent.ts'}"), (2000, "reload"), (2000, "layers")]
    run = run_live(tmp_path, "unravel~ default forward 2048", msgs,
                   extra=["unravel~ default forward 2048"])   # the model is shared
    assert not run.timed_out and run.errors == [], run.errors
    for r in run.results:
        assert r.pd_thread_ms is not None and r.pd_thread_ms < MSG_MS, (r.message, r.pd_thread_ms)
        assert r.max_gap_ms is not None and r.max_gap_ms < GAP_MS, (r.message, r.max_gap_ms)
    load = run.results[0]
    assert any(text.startswith("loaded ") and text.endswith("default4.ts")
               for _, text in load.replies), load.replies
    assert run.results[1].status.get("shared") == "1"     # before the first bend
    assert (tmp_path / "bent.ts").is_file()


def test_a_model_call_that_never_returns_leaves_pd_answering(tmp_path):
    """The model hangs in its first call on sound (live mode): messages still return at once,
    the object says once that the model stopped answering (what needs it waits in the
    queue), and `pd quit` ends Pd within 10 s."""
    model = make_hostile_model(tmp_path / "hang.ts", (1, 1, 1, 1), "hang", after=2)
    msgs = [(0, ""), (4000, "bend w offset 1"), (2000, "layers"), (2000, "bufsize 2048"),
            (2000, "method forward")]
    run = run_live(tmp_path, f"unravel~ {model} forward 2048", msgs, start_timeout_ms=500,
                   timeout=60)
    assert not run.timed_out and run.returncode == 0, run.lines[-10:]
    for r in run.results[1:]:
        assert r.pd_thread_ms is not None and r.pd_thread_ms < MSG_MS, (r.message, r.pd_thread_ms)
        assert r.max_gap_ms is not None and r.max_gap_ms < GAP_MS, (r.message, r.max_gap_ms)
    stalled = [ln for ln in run.errors if "has not answered" in ln]
    assert len(stalled) == 1, run.errors       # live mode: what needs the model waits


def test_a_hung_model_under_batch_quits_in_bounded_time(tmp_path):
    """Under -batch (sync mode) the audio thread waits for a block at most ENGINE_SYNCWAIT:
    the object reports the model once, later messages are refused at once, Pd quits."""
    model = make_hostile_model(tmp_path / "hang.ts", (1, 1, 1, 1), "hang", after=2)
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj(f"unravel~ {model} forward 2048")
    p.connect(p.obj("noise~"), 0, u, 0)
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    dl = p.obj("delay 500")
    p.connect(lb, 0, dl, 0)
    m = p.msg("bend w offset 1, layers, bang")
    p.connect(dl, 0, m, 0)
    p.connect(m, 0, u, 0)
    p.connect(u, 1, p.obj("print info"), 0)
    q = p.obj("delay 1000")
    p.connect(lb, 0, q, 0)
    p.connect(q, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "hang.pd"), timeout=30)
    assert r.returncode == 0 and r.seconds < 20, (r.returncode, r.seconds, r.lines[-5:])
    assert len([ln for ln in r.errors if "has not answered" in ln]) == 1, r.errors
    assert len([ln for ln in r.errors if "refused:" in ln]) == 2, r.errors
    assert "info: loaded 1" in r.lines         # bang is answered by C


def test_edits_never_land_during_a_model_call(tmp_path):
    """Bends at 100 Hz on a model that outputs 1 when its layer changed during a call: its
    output stays 0 (edits land between blocks), and the last bend is what the layer holds."""
    model = make_hostile_model(tmp_path / "watch.ts", (1, 1, 1, 1), "watch", spins=20000)
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj(f"unravel~ {model} forward 512")
    p.connect(p.obj("osc~ 100"), 0, u, 0)
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    peak = p.obj("env~ 512 512")                # any 1 in the output shows up here
    p.connect(u, 0, peak, 0)
    mx = p.obj("max 0")
    p.connect(peak, 0, mx, 0)
    hold = p.obj("f")
    p.connect(mx, 0, hold, 1)
    p.connect(mx, 0, mx, 1)
    met = p.obj("metro 10")
    p.connect(lb, 0, met, 0)
    cnt = p.obj("f")
    inc = p.obj("+ 1")
    p.connect(met, 0, cnt, 0)
    p.connect(cnt, 0, inc, 0)
    p.connect(inc, 0, cnt, 1)
    bend = p.msg("bend w offset $1")
    p.connect(cnt, 0, bend, 0)
    p.connect(bend, 0, u, 0)
    stop = p.obj("delay 3000")
    p.connect(lb, 0, stop, 0)
    halt = p.msg("stop")
    p.connect(stop, 0, halt, 0)
    p.connect(halt, 0, met, 0)
    fin = p.obj("delay 3500")
    p.connect(lb, 0, fin, 0)
    t = p.obj("t b b b")
    p.connect(fin, 0, t, 0)
    p.connect(t, 2, hold, 0)
    p.connect(hold, 0, p.obj("print peak"), 0)
    gw = p.msg("get_weights w")
    p.connect(t, 1, gw, 0)
    p.connect(gw, 0, u, 0)
    p.connect(u, 1, p.obj("print info"), 0)
    p.connect(cnt, 0, p.obj("print count"), 0)
    q = p.obj("delay 1000")
    p.connect(t, 0, q, 0)
    p.connect(q, 0, p.msg("; pd quit"), 0)
    r = run_pd(p.write(tmp_path / "watch.pd"), batch=False, args=["-nosound", "-r", "44100"],
               timeout=60)
    assert r.returncode == 0 and r.errors == [], r.errors
    counts = [float(v) for v in r.after("count:")]
    assert len(counts) > 150                    # ~300 bends sent at 100 Hz
    assert r.after("peak:") == ["0"], "an edit landed during a model call"
    layer = [ln for ln in r.after("info:") if ln.startswith("layer")][-1].split()[1:]
    assert {float(v) for v in layer} == {counts[-1]}    # the newest bend won


def _render(tmp_path, name: str) -> np.ndarray:
    """A -batch render of noise through the default model with a load and bends during it."""
    out = tmp_path / f"{name}.wav"
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj("unravel~ default forward 2048")
    tab = p.obj("table rec 88200")
    n = p.obj("noise~")
    p.connect(p.msg("seed 7"), 0, n, 0)
    p.connect(n, 0, u, 0)
    w = p.obj("tabwrite~ rec")
    p.connect(u, 0, w, 0)
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    p.connect(lb, 0, w, 0)
    for ms, m in [(300, "bend decoder.net.2.weight offset 0.1"), (600, "load default4"),
                  (900, "bend decoder.net.2.weight spread 2 50 3"), (1200, "restore")]:
        d = p.obj(f"delay {ms}")
        p.connect(lb, 0, d, 0)
        b = p.msg(m)
        p.connect(d, 0, b, 0)
        p.connect(b, 0, u, 0)
    fin = p.obj("delay 2100")
    p.connect(lb, 0, fin, 0)
    t = p.obj("t b b")
    p.connect(fin, 0, t, 0)
    wr = p.msg(f"write -bytes 4 {out} rec")
    p.connect(t, 1, wr, 0)
    p.connect(wr, 0, p.obj("soundfiler"), 0)
    p.connect(t, 0, p.msg("; pd quit"), 0)
    del tab
    r = run_pd(p.write(tmp_path / f"{name}.pd"), timeout=60)
    assert r.returncode == 0 and r.errors == [], r.errors
    return sf.read(out, dtype="float32")[0]


def test_batch_render_with_loads_and_bends_is_bit_identical(tmp_path):
    a, b = _render(tmp_path, "a"), _render(tmp_path, "b")
    assert np.abs(a).max() > 0.01
    np.testing.assert_array_equal(a, b)


def test_a_long_job_on_the_objects_own_model_never_starves_its_audio(tmp_path):
    """A decode job of 20 s of latents on the object's own model (it runs in a process of its
    own, at the lowest priority): the object's live output has no underrun while it runs, and
    messages to the object answer at once meanwhile."""
    z = tmp_path / "z.npy"
    frames = int(20 * 44100 / 2048)
    np.save(z, np.random.default_rng(3).standard_normal((1, 8, frames)).astype(np.float32))
    msgs = [(0, f"decode input {z} output {tmp_path / 'dec'}"),
            (1900, "bend decoder.net.2.weight offset 0.1"), (1900, "bang")]
    run = run_live(tmp_path, "unravel~ default forward 2048", msgs, tail_ms=4000)
    assert not run.timed_out and run.errors == [], run.errors
    for r in run.results:
        assert r.pd_thread_ms is not None and r.pd_thread_ms < MSG_MS, (r.message, r.pd_thread_ms)
        assert r.max_gap_ms is not None and r.max_gap_ms < GAP_MS, (r.message, r.max_gap_ms)
        assert r.underruns_delta == 0, (r.message, r.underruns_delta)
    done = [text for res in run.results for _, text in res.replies if text.startswith("done decode")]
    assert done, [res.replies for res in run.results]
    assert (tmp_path / "dec" / "z.wav").is_file()
