"""The Pd abstractions (pd/bender.pd, pd/chns0n.pd and wrappers), their help patches, the
examples and the headless demo render, in real `pd -batch` processes. GUI controls are driven
through the abstractions' public receive names; the numbers are compared with the backend."""

from __future__ import annotations

import os
import pathlib
import subprocess

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, ROOT, Patch, run_pd

pytestmark = pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(),
                                reason="the external is not built (make setup)")

PD_DIR = ROOT / "pd"
OWN = ["bender.pd", "chns0n.pd", "ch4ns0n.pd", "ch8ns0n.pd", "bender-help.pd", "chns0n-help.pd",
       "ch4ns0n-help.pd", "ch8ns0n-help.pd"]
EXAMPLES = sorted(p.name for p in (PD_DIR / "examples").glob("*.pd"))
RATIO = 2048


def _clean(res) -> None:
    assert res.returncode == 0, res.lines
    assert res.errors == [], res.errors


# ---------------------------------------------------------------- every patch opens cleanly

@pytest.mark.parametrize("name", OWN + [f"examples/{e}" for e in EXAMPLES])
def test_patch_opens_without_errors(name):
    patch = BUILD / name
    assert patch.exists(), f"{patch} is not in the build (make setup)"
    res = run_pd(patch, args=["-send", "pd quit"], timeout=60)
    _clean(res)


# ---------------------------------------------------------------- chNns0n plays the frames

def _latents(dims: int, frames: int, seed: int) -> np.ndarray:
    """(frames, dims) latent values with fractions float32 cannot hold exactly."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1.5, (frames, dims)) + np.arange(dims) * 0.1


@pytest.mark.parametrize("player,dims,subtype", [("ch4ns0n", 4, "DOUBLE"), ("ch8ns0n", 8, "FLOAT"),
                                                 ("chns0n 3", 3, "DOUBLE")])
def test_player_output_is_the_frames(tmp_path, player, dims, subtype):
    frames, play = 11, 25                      # loops more than twice
    z = _latents(dims, frames, seed=dims)
    sf.write(tmp_path / "z.latent.wav", z, 21, subtype=subtype)
    n = play * RATIO
    p = Patch()
    lb = p.obj("loadbang")
    pl = p.obj(f"{player} pl")
    info = p.obj("print info")
    p.connect(pl, 1, info, 0)
    for c in range(dims):
        p.obj(f"table out{c} {n}")
    snake = p.obj(f"snake~ out {dims}")
    p.connect(pl, 0, snake, 0)
    writes = [p.obj(f"tabwrite~ out{c}") for c in range(dims)]
    for c in range(dims):
        p.connect(snake, c, writes[c], 0)
    # open by message (relative to this patch), then Render and record in the same tick
    d1 = p.obj("delay 10")
    p.connect(lb, 0, d1, 0)
    start = p.msg("; pd dsp 1; pl open z.latent.wav; pl render 1; rec bang")
    p.connect(d1, 0, start, 0)
    rec = p.obj("r rec")
    for w in writes:
        p.connect(rec, 0, w, 0)
    d2 = p.obj(f"delay {n + 64} 1 samp")
    p.connect(d1, 0, d2, 0)
    end = p.msg(f"; pl render 0; wr write -wave -bytes 4 out.wav {' '.join(f'out{c}' for c in range(dims))}; pd quit")
    p.connect(d2, 0, end, 0)
    sfl = p.obj("soundfiler")
    p.connect(p.obj("r wr"), 0, sfl, 0)
    patch = p.write(tmp_path / "play.pd")
    res = run_pd(patch, args=["-r", "44100"], timeout=60)
    _clean(res)
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    k = (np.arange(n) // RATIO) % frames
    expect = z.astype(np.float32)[k]
    assert y.shape == expect.shape
    assert np.array_equal(y, expect)
    # the tempo readout: 60 * (sr / ratio) / k (unravel.tempo)
    [line] = res.after("info:")
    sel, k_read, bpm, double = line.split()
    assert sel == "loaded" and int(float(k_read)) == frames
    assert float(bpm) == pytest.approx(60 * 44100 / RATIO / frames, rel=1e-5)
    assert float(double) == pytest.approx(2 * float(bpm), rel=1e-5)


# ---------------------------------------------------------------- Bender drives the backend

LAYER_IDX, LAYER = 15, "decoder.net.2.weight"
BIAS_IDX, BIAS = 16, "decoder.net.2.bias"
# slider moves, in the order sent (each through its receive name); all land in one debounce
MOVES = [("offset", 0.05), ("percent", 50), ("seed", 7), ("randomize", 300), ("spread", 2.0),
         ("invert", 1)]


def _bender_patch(tmp_path) -> pathlib.Path:
    """[unravel~ default] wired to [bender tb] as in the help patch; the steps below are
    spaced in logical time beyond Bender's debounce; every reading is a float32 wav."""
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj("unravel~ default forward")
    b = p.obj("bender tb")
    p.connect(u, 1, b, 0)
    p.connect(b, 0, u, 0)
    p.connect(p.obj("r u"), 0, u, 0)
    p.obj("table got 10")
    sfl = p.obj("soundfiler")
    p.connect(p.obj("r wr"), 0, sfl, 0)
    dump = "; u get_weights {L} got; wr write -wave -bytes 4 {f} got"
    steps = [
        "; tb init",
        f"; tb layer {LAYER_IDX}",
        "; " + "; ".join(f"tb {k} {v}" for k, v in MOVES),
        dump.format(L=LAYER, f="bent.wav"),
        "; tb res",
        dump.format(L=LAYER, f="restored.wav"),
        # PUSH: draw into the graph (its public name 'w'), push, read back
        f"; tb layer {BIAS_IDX}; tb w const 0.25; tb w 0 1.5 -2; tb w 5 7",
        "; tb push",
        dump.format(L=BIAS, f="pushed.wav"),
        # one slider alone after PUSH: offset on the original bias (the push is replaced)
        "; tb offset -0.08",
        dump.format(L=BIAS, f="offset.wav"),
        # a layer shows the controls' state: bent, left, chosen again (controls at rest), one move
        f"; tb layer {LAYER_IDX}; tb randomize 500",
        f"; tb layer {BIAS_IDX}",
        f"; tb layer {LAYER_IDX}; tb spread 0.5",
        dump.format(L=LAYER, f="switched.wav"),
        "; pd quit",
    ]
    for i, text in enumerate(steps):
        d = p.obj(f"delay {50 + 150 * i}")
        m = p.msg(text)
        p.connect(lb, 0, d, 0)
        p.connect(d, 0, m, 0)
    return p.write(tmp_path / "bender_test.pd")


@pytest.fixture(scope="module")
def bender_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bender")
    res = run_pd(_bender_patch(d), args=["-r", "44100"], timeout=120)
    return d, res


def _read(path) -> np.ndarray:
    y, _ = sf.read(path, dtype="float32")
    return y


def _backend():
    import torch
    from unravel.bend import Bender
    from unravel.model import load_model
    torch.set_num_threads(1)
    return Bender(load_model("default", warmup=False))


def test_bender_runs_clean(bender_run):
    _, res = bender_run
    _clean(res)


def test_bender_sliders_change_the_weights_as_the_backend(bender_run):
    d, _ = bender_run
    got = _read(d / "bent.wav")
    bender = _backend()
    orig = bender.get_weights(LAYER)
    f32 = {k: float(np.float32(v)) for k, v in MOVES}
    pct, seed = f32["percent"], int(f32["seed"])
    for op in ("offset", "randomize", "spread", "invert"):
        bender.bend(LAYER, op, f32[op], pct, seed)
    want = bender.get_weights(LAYER)
    assert got.shape == orig.shape
    assert np.array_equal(got, want)
    # Bender._apply: the evenly spaced half is orig * 2 * -1 + 0.05 + noise, the rest untouched
    n = orig.size
    idx = np.floor(np.arange(n * 50 // 100) * (100 / 50)).astype(int) % n
    rest = np.setdiff1d(np.arange(n), idx)
    assert np.array_equal(got[rest], orig[rest])
    noise = got[idx] - (orig[idx] * -2 + np.float32(0.05))
    assert np.std(noise) == pytest.approx(300 * 1e-4, rel=0.1)


def test_bender_res_restores_bit_for_bit(bender_run):
    d, _ = bender_run
    assert np.array_equal(_read(d / "restored.wav"), _backend().get_weights(LAYER))


def test_bender_push_writes_the_drawn_array(bender_run):
    d, _ = bender_run
    got = _read(d / "pushed.wav")
    want = np.full(_backend().get_weights(BIAS).size, 0.25, np.float32)
    want[:2] = [1.5, -2]
    want[5] = 7
    assert np.array_equal(got, want)


def test_bender_one_slider_after_push(bender_run):
    d, _ = bender_run
    orig = _backend().get_weights(BIAS)
    assert np.array_equal(_read(d / "offset.wav"), orig + np.float32(-0.08))


# ---------------------------------------------------------------- make demo: the headless render

def test_demo_render_is_fixed_nonsilent_and_repeatable(tmp_path):
    """What `make demo` runs (build/unravel/examples/render.sh), twice."""
    script = BUILD / "examples" / "render.sh"
    outs = []
    for run in ("a", "b"):
        p = subprocess.run(["sh", str(script), str(tmp_path / run)], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert p.returncode == 0, p.stdout + p.stderr
        wav = tmp_path / run / "demo.wav"
        assert f"demo: wrote {wav}" in p.stdout
        outs.append(wav.read_bytes())
    assert outs[0] == outs[1]
    # issue 25: a second render into the same folder keeps the first (demo-2.wav beside it)
    before = sorted(q.name for q in (tmp_path / "a").rglob("*"))
    p = subprocess.run(["sh", str(script), str(tmp_path / "a")], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0 and f"demo: wrote {tmp_path / 'a' / 'demo-2.wav'}" in p.stdout, p.stdout
    assert (tmp_path / "a" / "demo.wav").read_bytes() == outs[0]
    assert (tmp_path / "a" / "demo-2.wav").read_bytes() == outs[0]
    assert set(before) <= {q.name for q in (tmp_path / "a").rglob("*")}
    y, sr = sf.read(tmp_path / "a" / "demo.wav", dtype="float32")
    assert sr == 44100 and y.shape == (8 * 44100,)
    rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    assert rms > 1e-3 and np.isfinite(y).all()


def test_bender_show_panels_enable_reload(tmp_path):
    """Show prints every layer; MSPrior's temperature reaches the model, AFTER's attributes
    (absent here) give exactly one error each and nothing else; Enable; the reload inlet
    brings the original weights back."""
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj("unravel~ default forward")
    b = p.obj("bender tb")
    p.connect(u, 1, b, 0)
    p.connect(b, 0, u, 0)
    p.connect(u, 1, p.obj("print info"), 0)
    p.connect(p.obj("r u"), 0, u, 0)
    p.connect(p.obj("r rl"), 0, b, 1)
    p.connect(p.obj("r mark"), 0, p.obj("print mark"), 0)
    p.obj("table got 10")
    sfl = p.obj("soundfiler")
    p.connect(p.obj("r wr"), 0, sfl, 0)
    steps = [
        "; tb init; mark show; tb show",
        "; mark temperature; tb temperature 5; u get temperature",
        "; mark after; tb structure 2; tb timbre 1; tb steps 4",   # public names = labels
        "; mark enable; tb enable 0; u bang",
        f"; mark reload; tb layer {LAYER_IDX}; tb offset 0.1",
        "; rl bang",
        f"; u get_weights {LAYER} got; wr write -wave -bytes 4 reloaded.wav got; mark end; pd quit",
    ]
    for i, text in enumerate(steps):
        d = p.obj(f"delay {50 + 150 * i}")
        m = p.msg(text)
        p.connect(lb, 0, d, 0)
        p.connect(d, 0, m, 0)
    res = run_pd(p.write(tmp_path / "panels.pd"), args=["-r", "44100"], timeout=120)
    assert res.returncode == 0
    sections: dict[str, list[str]] = {}
    cur = "start"
    for ln in res.lines:
        if ln.startswith("mark: "):
            cur = ln.split()[1]
        else:
            sections.setdefault(cur, []).append(ln)
    names = _backend().layers()
    shown = [ln for ln in sections["show"] if ln.startswith("bender:")]
    assert shown == [f"bender: {i} {n}" for i, n in enumerate(names)]
    assert "info: attribute temperature 5" in sections["temperature"]
    after = sections["after"]
    assert len(after) == 3 and all(ln.startswith("error") for ln in after), after
    for attr in ("guidance_structure", "guidance_timbre", "nb_steps"):
        assert any(attr in ln for ln in after), after
    assert "info: enabled 0" in sections["enable"]
    assert [ln for ln in res.lines if ln.startswith("error")] == after
    assert np.array_equal(_read(tmp_path / "reloaded.wav"), _backend().get_weights(LAYER))


def test_bender_layer_is_what_the_controls_show(bender_run):
    """After leaving a bent layer and coming back, the controls rest at their defaults and
    one move sends the whole state: the old noise is gone, only the spread acts."""
    d, _ = bender_run
    orig = _backend().get_weights(LAYER)
    assert np.array_equal(_read(d / "switched.wav"), orig * np.float32(0.5))


def test_player_says_when_channels_differ(tmp_path):
    """A 4-channel file in an 8-channel player: one line says so, the extra channels play 0."""
    sf.write(tmp_path / "z4.latent.wav", _latents(4, 5, seed=1), 21, subtype="DOUBLE")
    p = Patch()
    lb = p.obj("loadbang")
    pl = p.obj("ch8ns0n pl")
    p.connect(pl, 1, p.obj("print info"), 0)
    d = p.obj("delay 10")
    p.connect(lb, 0, d, 0)
    p.connect(d, 0, p.msg("; pl open z4.latent.wav; pd quit"), 0)
    res = run_pd(p.write(tmp_path / "mismatch.pd"), args=["-r", "44100"], timeout=60)
    _clean(res)
    assert "chns0n: file has 4 channels - this player 8" in res.lines
    assert res.after("info:") == [f"loaded 5 {60 * 44100 / RATIO / 5:g} {120 * 44100 / RATIO / 5:g}"]


def test_committed_patches_are_what_the_generator_writes():
    """pd/*.pd of this issue are written by tools/pdgen/: edit the generator, not the patch."""
    import importlib
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        pdgen = importlib.import_module("pdgen")
        for family in ("bender", "chns0n", "help", "examples"):
            for name, text in pdgen.patches(family).items():
                assert (PD_DIR / name).read_text() == text, f"pd/{name} differs from tools/pdgen/{family}.py"
    finally:
        sys.path.remove(str(ROOT / "tools"))
