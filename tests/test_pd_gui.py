"""The help patches and 3-render.pd in Pd WITH its GUI, on a virtual X display (Xvfb, installed
by `make setup`): each help patch opens without an error and its window is screenshot into
tests/_out/<name>.png (look at them); 3-render.pd opened in the GUI renders and does not quit
Pd. Skipped (saying why) without Xvfb/xwd. The X helpers are tools/screenshots.py's (which
remakes docs/*.png)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pdrun import BUILD, ROOT, is_error

sys.path.insert(0, str(ROOT / "tools"))
from screenshots import GuiPd, png, settled, window_box, xvfb  # noqa: E402  (the X side, shared)

OUT = ROOT / "tests" / "_out"
HELP = ["unravel~-help.pd", "bender-help.pd", "chns0n-help.pd", "ch4ns0n-help.pd", "ch8ns0n-help.pd"]

pytestmark = [
    pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(), reason="the external is not built (make setup)"),
    pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xwd")),
                       reason="no Xvfb/xwd (Debian: apt install xvfb x11-apps; make setup does)"),
]


@pytest.fixture(scope="module")
def display():
    with xvfb(90 + os.getpid() % 9) as name:
        yield name


@pytest.mark.parametrize("name", HELP)
def test_help_in_the_gui(display, tmp_path, name):
    OUT.mkdir(exist_ok=True)
    pd = GuiPd(display, BUILD / name, tmp_path / "pd.log", tmp_path)
    try:
        # every help patch holds an [unravel~]: its banner means the patch is loading; then
        # give the GUI a moment to draw it
        assert pd.wait_for("[unravel~] 0.1.0", 60), pd.lines()
        rgb = settled(display, 60)
    finally:
        pd.stop()
    png(OUT / name.replace(".pd", ".png"), rgb)
    errors = [ln for ln in pd.lines() if is_error(ln)]
    assert not errors, errors
    w, h = window_box(rgb)
    assert 300 < w <= 1000 and 200 < h <= 700 + 60, (w, h)    # + the window's menu bar
    assert (rgb.max(axis=2) < 60)[:h, :w].mean() > 0.003        # text and boxes were drawn


def test_3_render_in_the_gui_keeps_pd(display, tmp_path):
    """Opened in the GUI, 3-render renders its demo.wav and leaves Pd running."""
    pd = GuiPd(display, BUILD / "examples" / "3-render.pd", tmp_path / "pd.log", tmp_path)
    try:
        assert pd.wait_for("demo-frames:", 240), pd.lines()
        time.sleep(3)
        alive = pd.p.poll() is None
    finally:
        pd.stop()
    assert alive, pd.lines()
    assert (tmp_path / "Documents" / "unravel" / "3-render" / "demo.wav").exists()
    assert not [ln for ln in pd.lines() if is_error(ln)], pd.lines()


def test_5_live_in_the_gui(display, tmp_path):
    """5-live.pd in the GUI through a cycle (loop, encode, generate, as its buttons send):
    no error, the phrase's graph and the player drawn; the screenshot is
    tests/_out/5-live.png (docs/live.png is one)."""
    OUT.mkdir(exist_ok=True)
    drive = tmp_path / "drive.pd"
    drive.write_text(
        "#N canvas 1000 660 250 120 12;\n"
        "#X obj 10 10 loadbang;\n"
        f"#X msg 10 40 \\; pd open 5-live.pd {BUILD / 'examples'};\n"
        "#X obj 10 70 del 2000;\n"
        "#X msg 10 100 \\; pd dsp 1 \\; live-loop bang \\; live-encode bang;\n"
        "#X obj 150 10 r live-reply;\n"
        "#X obj 150 40 print reply;\n"
        "#X obj 150 70 route done;\n"
        "#X obj 150 100 route encode;\n"
        "#X msg 150 130 \\; live-generate bang;\n"
        "#X connect 0 0 1 0;\n#X connect 0 0 2 0;\n#X connect 2 0 3 0;\n#X connect 4 0 5 0;\n"
        "#X connect 4 0 6 0;\n#X connect 6 0 7 0;\n#X connect 7 0 8 0;\n")
    pd = GuiPd(display, drive, tmp_path / "pd.log", tmp_path)
    try:
        assert pd.wait_for("reply: done generate live-b", 120), pd.lines()
        time.sleep(3)
        rgb = settled(display, 5)
    finally:
        pd.stop()
    rgb = np.ascontiguousarray(rgb[:640, :1000])     # its window (the driver's is lower right)
    png(OUT / "5-live.png", rgb)
    errors = [ln for ln in pd.lines() if is_error(ln)]
    assert not errors, errors
    w, h = window_box(rgb)
    assert 800 < w <= 1000 and 500 < h <= 580 + 60, (w, h)
    assert (rgb.max(axis=2) < 60)[:h, :w].mean() > 0.003


MSPRIOR_RGB, AFTER_RGB, BENDER_RGB = (232, 224, 216), (224, 232, 224), (216, 220, 232)
# docs/bender.png: Init, a decoder layer, model B at t = 0.3, then scale 2 on half the
# channels (seed 7), which replaces the morph on that layer
BENDER_MOVES = ["; b1 init", "; b1 layer 15", "; b1 file default4; b1 morph 0.3",
                "; b1 pct 50; b1 cseed 7; b1 op 1"]


def bender_shot(display: str, tmp_path: Path, model: str, moves: list[str]) -> tuple[np.ndarray, list[str]]:
    """[unravel~ <model> forward] above [bender b1] in a window of their own, the `moves`
    sent 1.5 s apart from the start (through Bender's public names, as a click does; the
    model's messages wait for its load); returns the screen cropped to the two and what Pd
    printed."""
    drive = tmp_path / "bender-shot.pd"
    steps = "".join(f"#X obj 900 {40 + 60 * i} delay {1500 * (i + 1)};\n"
                    f"#X msg 900 {70 + 60 * i} {m.replace(';', ' ' + chr(92) + ';').strip()};\n"
                    for i, m in enumerate(moves))
    conns = "".join(f"#X connect 2 0 {3 + 2 * i} 0;\n#X connect {3 + 2 * i} 0 {4 + 2 * i} 0;\n"
                    for i in range(len(moves)))
    drive.write_text(f"#N canvas 0 50 680 420 12;\n#X obj 4 4 unravel~ {model} forward;\n"
                     "#X obj 4 30 bender b1;\n#X obj 900 4 loadbang;\n" + steps +
                     "#X connect 0 1 1 0;\n#X connect 1 0 0 0;\n" + conns)
    pd = GuiPd(display, drive, tmp_path / "pd.log", tmp_path)
    try:
        assert pd.wait_for("loaded model", 120), pd.lines()
        time.sleep(1.5 * len(moves) + 2)
        rgb = settled(display, 30)
    finally:
        pd.stop()
    ys, xs = np.nonzero(np.all(rgb == BENDER_RGB, axis=2))
    x0, y0 = int(xs.min()) - 4, int(ys.min()) - 30           # the canvas's origin on the screen
    return np.ascontiguousarray(rgb[y0:y0 + 30 + 374, x0:x0 + 4 + 662]), pd.lines()


def _errors(lines: list[str]) -> list[str]:
    """Pd's error lines, but the watchdog's: on a loaded machine the first load in a GUI Pd
    can take more than 3 s ('the model has not answered', then 'answers again')."""
    return [ln for ln in lines if is_error(ln) and "has not answered" not in ln]


def _has(rgb: np.ndarray, color: tuple[int, int, int]) -> int:
    return int(np.all(rgb == color, axis=2).sum())


def test_bender_in_the_gui(display, tmp_path):
    """[bender] under [unravel~ default forward], moved through its public names: no error,
    the layer drawn, the MSPrior row shown (the model has temperature), the AFTER row not.
    The screenshot is tests/_out/bender.png (docs/bender.png is one)."""
    OUT.mkdir(exist_ok=True)
    rgb, lines = bender_shot(display, tmp_path, "default", BENDER_MOVES)
    png(OUT / "bender.png", rgb)
    assert not _errors(lines), lines
    assert any(ln.startswith("[unravel~]: channels decoder.net.2.weight scale: 64 channels")
               for ln in lines), lines
    assert _has(rgb, MSPRIOR_RGB) > 5000 and _has(rgb, AFTER_RGB) == 0
    assert (rgb.max(axis=2) < 60).mean() > 0.01           # text, boxes and the graph drawn


@pytest.mark.parametrize("names,msprior,after", [
    ([], False, False), (["temperature", "listen", "guidance_structure", "guidance_timbre", "nb_steps"],
                         True, True)])
def test_bender_rows_follow_the_model(display, tmp_path, names, msprior, after):
    """After Init, the MSPrior and AFTER rows are drawn exactly when the model has their
    attributes, also after a second Init; their controls moved by name print no error."""
    from toymodels import make_attribute_model
    model = make_attribute_model(tmp_path / "m.ts", names)
    rgb, lines = bender_shot(display, tmp_path, str(model),
                             ["; b1 init", "; b1 init; b1 temperature 5; b1 structure 2"])
    assert not _errors(lines), lines
    assert (_has(rgb, MSPRIOR_RGB) > 5000) == msprior
    assert (_has(rgb, AFTER_RGB) > 5000) == after
