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
    """Show prints every layer; MSPrior's temperature reaches the model, AFTER's controls
    (the model has none of their attributes) send nothing and print nothing; Enable; the
    reload inlet brings the original weights back."""
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
    # issue 25: the default model has no AFTER attributes: its controls send nothing, no error
    assert sections.get("after", []) == []
    assert "info: enabled 0" in sections["enable"]
    assert [ln for ln in res.lines if ln.startswith("error")] == []
    assert np.array_equal(_read(tmp_path / "reloaded.wav"), _backend().get_weights(LAYER))


# ---------------------------------------------------------------- Bender: channels, morph, stats

def _drive_bender(tmp_path, model: str, steps: list[str], name: str):
    """[unravel~ <model> forward] and [bender tb] wired as in the help, [print info] on the
    info outlet, `mark <name>` lines between the steps (150 ms of logical time apart)."""
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj(f"unravel~ {model} forward")
    b = p.obj("bender tb")
    p.connect(u, 1, b, 0)
    p.connect(b, 0, u, 0)
    p.connect(u, 1, p.obj("print info"), 0)
    p.connect(p.obj("r u"), 0, u, 0)
    p.connect(p.obj("r mark"), 0, p.obj("print mark"), 0)
    p.obj("table got 10")
    sfl = p.obj("soundfiler")
    p.connect(p.obj("r wr"), 0, sfl, 0)
    for i, text in enumerate(steps + ["; pd quit"]):
        d = p.obj(f"delay {50 + 150 * i}")
        m = p.msg(text)
        p.connect(lb, 0, d, 0)
        p.connect(d, 0, m, 0)
    res = run_pd(p.write(tmp_path / f"{name}.pd"), args=["-r", "44100"], timeout=120)
    sections: dict[str, list[str]] = {}
    cur = "start"
    for ln in res.lines:
        if ln.startswith("mark: "):
            cur = ln.split()[1]
        else:
            sections.setdefault(cur, []).append(ln)
    return res, sections


def _dump(f: str) -> str:
    return f"; u get_weights {LAYER} got; wr write -wave -bytes 4 {f} got"


def _stats(lines: list[str]) -> list[float]:
    """The numbers of the last `layer_stats <LAYER> ...` reply in `lines`."""
    [*_, last] = [ln.split()[3:] for ln in lines if ln.startswith(f"info: layer_stats {LAYER} ")]
    return [float(v) for v in last]


def _numpy_stats(w: np.ndarray) -> list[float]:
    w = w.astype(np.float64)
    return [w.size, w.min(), w.max(), w.mean(), w.std()]


@pytest.fixture(scope="module")
def channels_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bender_channels")
    steps = [
        f"; tb init; tb layer {LAYER_IDX}",
        "; mark ablate; tb chans 3; tb op 0",                   # ablate channel 3 (a list)
        _dump("ablated.wav"),
        "; mark invert; tb pct 25; tb cseed 7; tb op 2",        # invert a quarter, seed 7
        _dump("inverted.wav"),
        "; mark scale; tb k 3; tb op 1; tb k 0.5",              # scale, then k moves it
        _dump("scaled.wav"),
        "; mark morph1; tb file default4; tb morph 1",          # B, at t = 1
        _dump("morph1.wav"),
        "; mark morph0; tb morph 0",
        _dump("morph0.wav"),
        "; mark half; tb morph 0.5",
        _dump("morph_half.wav"),
        "; mark resall; tb res_all",
        _dump("res_all.wav"),
        "; mark end",
    ]
    res, sections = _drive_bender(d, "default", steps, "channels")
    return d, res, sections


def test_bender_channels_runs_clean(channels_run):
    _, res, _ = channels_run
    _clean(res)


def test_bender_channel_panel_ablates_inverts_scales(channels_run):
    """ablate on channel 3 (chans 3): the reply counts 1, get_weights shows that channel 0 and
    the rest untouched; invert on 25 percent, seed 7; scale 3 then k 0.5 moving it: each as
    the backend computes it; each reply's count is the backend's."""
    from unravel.bend import channel_axis
    d, _, sections = channels_run
    bender = _backend()
    orig = bender.get_weights(LAYER)
    p = bender._param(LAYER)
    axis = channel_axis(bender.model.module, LAYER, p)
    got = _read(d / "ablated.wav").reshape(p.shape)
    assert "info: channels decoder.net.2.weight ablate 1" in sections["ablate"]
    assert np.all(np.take(got, 3, axis) == 0)
    assert np.count_nonzero(np.take(got, 3, axis)) == 0 and np.any(np.take(orig.reshape(p.shape), 3, axis))
    keep = [c for c in range(p.shape[axis]) if c != 3]
    assert np.array_equal(np.take(got, keep, axis), np.take(orig.reshape(p.shape), keep, axis))
    n = bender.channels(LAYER, "invert", percent=25, seed=7)
    assert f"info: channels {LAYER} invert {n}" in sections["invert"]
    assert np.array_equal(_read(d / "inverted.wav"), bender.get_weights(LAYER))
    bender.channels(LAYER, "scale", 0.5, percent=25, seed=7)
    assert f"info: channels {LAYER} scale {n}" in sections["scale"]
    assert np.array_equal(_read(d / "scaled.wav"), bender.get_weights(LAYER))


def test_bender_morph_slider_gives_a_and_b(channels_run):
    """model B chosen by its public name 'file', the morph slider at 1: B's weights, at 0:
    A's, at 0.5 the float32 mean (as unravel.morph mixes); res_all: A's everywhere."""
    from unravel.bend import Bender
    from unravel.model import load_model
    d, _, sections = channels_run
    a = _backend().get_weights(LAYER)
    b = Bender(load_model("default4", warmup=False)).get_weights(LAYER)
    assert any(ln.startswith("info: morph 22 3") for ln in sections["morph1"]), sections["morph1"]
    assert np.array_equal(_read(d / "morph1.wav"), b)
    assert np.array_equal(_read(d / "morph0.wav"), a)
    half = _read(d / "morph_half.wav")
    want = _backend()
    want.morph(load_model("default4", warmup=False).path, 0.5)
    assert np.array_equal(half, want.get_weights(LAYER))
    assert np.allclose(half, (a + b) / 2, atol=1e-6)
    assert np.array_equal(_read(d / "res_all.wav"), a)


def test_bender_layer_numbers_are_numpys(channels_run):
    """After every change the layer view's numbers (the layer_stats reply) are size, min,
    max, mean and std of the layer's weights as numpy computes them."""
    d, _, sections = channels_run
    for mark, wav in (("ablate", "ablated.wav"), ("invert", "inverted.wav"),
                      ("scale", "scaled.wav"), ("morph1", "morph1.wav"),
                      ("half", "morph_half.wav"), ("resall", "res_all.wav")):
        got = _stats(sections[mark])
        want = _numpy_stats(_read(d / wav))
        assert got[0] == want[0], mark
        assert got[1:] == pytest.approx(want[1:], rel=1e-5, abs=1e-9), mark


def test_bender_attribute_rows_follow_the_model(tmp_path):
    """A model without attributes: temperature, listen, structure, timbre and steps send
    nothing and print nothing (a RAVE export without a prior). A model with MSPrior's and
    AFTER's attributes: each control sets its attribute."""
    from toymodels import make_attribute_model
    none = make_attribute_model(tmp_path / "none.ts", [])
    full = make_attribute_model(tmp_path / "full.ts", ["temperature", "listen", "guidance_structure",
                                                       "guidance_timbre", "nb_steps"])
    moves = "; tb temperature 5; tb listen 1; tb structure 2; tb timbre 1.5; tb steps 4"
    res, sections = _drive_bender(tmp_path, str(none), ["; tb init", "; mark moves" + moves, "; mark end"],
                                  "none")
    assert res.returncode == 0 and res.errors == [], res.lines
    assert sections.get("moves", []) == [], sections.get("moves")
    gets = "; " + "; ".join(f"u get {a}" for a in ("temperature", "listen", "guidance_structure",
                                                    "guidance_timbre", "nb_steps"))
    res, sections = _drive_bender(tmp_path, str(full), ["; tb init", "; mark moves" + moves, gets,
                                                        "; mark end"], "full")
    _clean(res)
    assert [ln for ln in sections["moves"] if ln.startswith("info: attribute")] == [
        "info: attribute temperature 5", "info: attribute listen 1",
        "info: attribute guidance_structure 2", "info: attribute guidance_timbre 1.5",
        "info: attribute nb_steps 4"]


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
