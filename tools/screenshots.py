"""`.venv/bin/python tools/screenshots.py [NAME...]`: remake the pictures of the Pd patches in
docs/ (docs/<NAME>.png; no NAME: all of them) from the current patches, in Pd with its GUI
on a virtual display (Xvfb + xwd, as tests/test_pd_gui.py), with the bundled model and the
built library (build/unravel, `make native`). docs/screenshots.json records, for each
picture, the sha256 of the patch files it was made from and of how it was staged;
tests/test_screenshots.py recomputes them from the committed patches and names the picture
to remake when a patch changed without its screenshot.

docs/app.png (the web page) is not a patch: tests/test_app_browser.py takes it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PD_DIR = ROOT / "pd"
DOCS = ROOT / "docs"
RECORD = DOCS / "screenshots.json"
BUILD = ROOT / "build" / "unravel"
PD = os.environ.get("PD", "pd")
MENU = 32             # the height of a patch window's menu bar above its canvas (Pd 0.55, Tk)

# Staging patches, drawn at the top left, the driving objects far right (out of the picture);
# {lib}: the library folder; {gate}: a file made once Pd printed the shot's `gate` line (Bender
# starts once its model answers). `; <name> <control> <value>` moves a panel's control.
BENDER = """#N canvas 0 0 1000 600 12;
#X obj 20 10 unravel~ default forward;
#X obj 20 45 bender shot;
#X obj 900 10 loadbang;
#X obj 900 40 metro 200;
#X msg 900 70 symbol {gate};
#X obj 900 100 file isfile;
#X obj 900 130 sel 1;
#X obj 900 160 t b b;
#X msg 960 190 stop;
#X msg 900 220 \\; shot init bang;
#X obj 900 250 delay 2000;
#X msg 900 280 \\; shot layer 15 \\; shot file default4 \\; shot morph 0.3 \\; shot spread 1.5 \\; shot percent 50 \\; shot seed 7;
#X obj 900 310 delay 2000;
#X obj 900 340 print screenshot;
#X connect 0 1 1 0;
#X connect 1 0 0 0;
#X connect 2 0 3 0;
#X connect 3 0 4 0;
#X connect 4 0 5 0;
#X connect 5 0 6 0;
#X connect 6 0 7 0;
#X connect 7 1 8 0;
#X connect 8 0 3 0;
#X connect 7 0 9 0;
#X connect 7 0 10 0;
#X connect 10 0 11 0;
#X connect 10 0 12 0;
#X connect 12 0 13 0;
"""
PLAYER = """#N canvas 0 0 1000 600 12;
#X obj 20 10 ch8ns0n shot;
#X obj 20 220 unravel~ -m default decode;
#X obj 900 10 loadbang;
#X msg 900 40 \\; shot beats 24 \\; shot open {lib}/examples/loop.latent.wav \\; shot render 1 \\; pd dsp 1;
#X obj 900 90 delay 3000;
#X obj 900 120 print screenshot;
#X connect 0 0 1 0;
#X connect 2 0 3 0;
#X connect 2 0 4 0;
#X connect 4 0 5 0;
"""
# 5-live.pd through a cycle as its buttons send: loop, encode, then generate
LIVE = """#N canvas 1000 660 250 120 12;
#X obj 10 10 loadbang;
#X msg 10 40 \\; pd open 5-live.pd {lib}/examples;
#X obj 10 70 del 2000;
#X msg 10 100 \\; pd dsp 1 \\; live-loop bang \\; live-encode bang;
#X obj 150 10 r live-reply;
#X obj 150 40 print reply;
#X obj 150 70 route done;
#X obj 150 100 route encode generate;
#X msg 150 130 \\; live-generate bang;
#X obj 150 160 t b;
#X obj 150 190 delay 3000;
#X obj 150 220 print screenshot;
#X connect 0 0 1 0;
#X connect 0 0 2 0;
#X connect 2 0 3 0;
#X connect 4 0 5 0;
#X connect 4 0 6 0;
#X connect 6 0 7 0;
#X connect 7 0 8 0;
#X connect 7 1 9 0;
#X connect 9 0 10 0;
#X connect 10 0 11 0;
"""


@dataclass(frozen=True)
class Shot:
    """One picture: the patch files it shows (under pd/), what is opened (a patch of the
    library, or a staging patch), the line Pd prints when it is ready, the part of the
    canvas shown ((x0, y0, x1, y1); y0 = -MENU: with the menu bar; None: the whole window),
    whether it is still (then shot once two shots 1 s apart agree) or moves (shot at once)."""
    patches: tuple[str, ...]
    opens: str
    ready: str
    crop: tuple[int, int, int, int] | None = None
    staging: str = ""
    still: bool = True
    gate: str = ""


def panel(name: str) -> tuple[int, int]:
    """The size of abstraction pd/<name>.pd's graph-on-parent panel (its own '#X coords')."""
    depth, size = 0, (0, 0)
    for rec in (PD_DIR / f"{name}.pd").read_text().split(";\n"):
        words = rec.split()
        if words[:2] == ["#N", "canvas"]:
            depth += 1
        elif words[:2] == ["#X", "restore"]:
            depth -= 1
        elif depth == 1 and words[:2] == ["#X", "coords"] and len(words) >= 9 and words[8] != "0":
            size = int(float(words[6])), int(float(words[7]))
    return size


SHOTS: dict[str, Shot] = {
    "help-unravel": Shot(("unravel~-help.pd",), "unravel~-help.pd", "[unravel~] 0.1.0"),
    "help-bender": Shot(("bender-help.pd", "bender.pd"), "bender-help.pd", "[unravel~] 0.1.0"),
    "help-chns0n": Shot(("chns0n-help.pd", "chns0n.pd"), "chns0n-help.pd", "[unravel~] 0.1.0"),
    "bender": Shot(("bender.pd",), "", "screenshot: bang",
                   (0, 0, 40 + panel("bender")[0], 57 + panel("bender")[1]), BENDER,
                   gate="[unravel~]: loaded model"),
    "chns0n": Shot(("ch8ns0n.pd", "chns0n.pd"), "", "screenshot: bang", (0, 0, 340, 250), PLAYER,
                   still=False),
    "live": Shot(("examples/5-live.pd", "ch8ns0n.pd", "chns0n.pd"), "", "screenshot: bang",
                 (0, -MENU, 1000, 580), LIVE, still=False),
}


def fingerprint(name: str) -> str:
    """The sha256 of what picture `name` is made from: its patch files as committed in pd/
    and its staging patch (with no machine path in it)."""
    h = hashlib.sha256()
    shot = SHOTS[name]
    for p in shot.patches:
        h.update(f"{p}\n".encode() + (PD_DIR / p).read_bytes())
    h.update(shot.staging.encode())
    return h.hexdigest()


def recorded() -> dict[str, dict]:
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


# ----------------------------------------------------------------------- the X side

def png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG (zlib only)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\0" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def screenshot(display: str) -> np.ndarray:
    """The whole X screen as an RGB array (xwd's ZPixmap, 24/32 bits per pixel)."""
    data = subprocess.run(["xwd", "-root", "-silent", "-display", display], capture_output=True,
                          check=True).stdout
    h = struct.unpack(">25I", data[:100])
    header, width, height, order, bpp, bpl, ncolors = h[0], h[4], h[5], h[7], h[11], h[12], h[19]
    assert bpp == 32, bpp
    off = header + 12 * ncolors
    px = np.frombuffer(data[off:off + bpl * height], np.uint8).reshape(height, bpl)[:, :width * 4]
    px = px.reshape(height, width, 4)
    return np.ascontiguousarray(px[:, :, [2, 1, 0]] if order == 0 else px[:, :, [1, 2, 3]])


def settled(display: str, timeout: float) -> np.ndarray:
    """A screenshot once something is drawn and two shots 1 s apart are the same."""
    last, t0 = None, time.monotonic()
    while time.monotonic() - t0 < timeout:
        rgb = screenshot(display)
        if rgb.max() > 40 and last is not None and np.array_equal(rgb, last):
            return rgb
        last = rgb
        time.sleep(1)
    return last


def window_box(rgb: np.ndarray) -> tuple[int, int]:
    """The size of the drawn (non-black) area at the top left of the screen."""
    lit = rgb.max(axis=2) > 40
    ys, xs = np.nonzero(lit)
    return (int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else (0, 0)


@contextmanager
def xvfb(num: int):
    """A virtual X display :num (1280x800) while the block runs."""
    name = f":{num}"
    x = subprocess.Popen(["Xvfb", name, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{num}").exists():
                break
            time.sleep(0.05)
        yield name
    finally:
        x.terminate()
        x.wait()


class GuiPd:
    """Pd with its GUI on `display`, opening `patch`; stderr collected in a file."""

    def __init__(self, display: str, patch: Path, log: Path, home: Path):
        self.log = log
        env = dict(os.environ, DISPLAY=display, HOME=str(home), OMP_NUM_THREADS="1")
        self.p = subprocess.Popen([PD, "-noaudio", "-nomidi", "-noprefs", "-stderr", "-path", str(BUILD),
                                   "-open", str(patch)], stdout=log.open("w"),
                                  stderr=subprocess.STDOUT, env=env, cwd=patch.parent, start_new_session=True)

    def lines(self) -> list[str]:
        return [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]

    def wait_for(self, text: str, timeout: float) -> bool:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if any(text in ln for ln in self.lines()) or self.p.poll() is not None:
                return any(text in ln for ln in self.lines())
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()


# ----------------------------------------------------------------------- the pictures

def take(name: str, display: str, tmp: Path) -> np.ndarray:
    """Picture `name` as an RGB array."""
    shot = SHOTS[name]
    if shot.staging:
        patch = tmp / f"{name}-shot.pd"
        patch.write_text(shot.staging.replace("{lib}", str(BUILD)).replace("{gate}", str(tmp / f"{name}.go")))
    else:
        patch = BUILD / shot.opens
    pd = GuiPd(display, patch, tmp / f"{name}.log", tmp)
    try:
        if shot.gate:
            if not pd.wait_for(shot.gate, 180):
                raise RuntimeError(f"{name}: Pd never printed {shot.gate!r}:\n" + "\n".join(pd.lines()[-20:]))
            (tmp / f"{name}.go").touch()
        if not pd.wait_for(shot.ready, 180):
            raise RuntimeError(f"{name}: Pd never printed {shot.ready!r}:\n" + "\n".join(pd.lines()[-20:]))
        rgb = settled(display, 60) if shot.still else (time.sleep(1), screenshot(display))[1]
        if any("has not answered" in ln for ln in pd.lines()):     # a slow first load: its end
            pd.wait_for("answers again", 60)
            time.sleep(3)
            rgb = settled(display, 60) if shot.still else screenshot(display)
    finally:
        pd.stop()
    lines = pd.lines()
    errors = [ln for ln in lines if (ln.lower().startswith("error") or "couldn't create" in ln)
              # a slow first load on a busy machine, said and then over: not the patch's fault
              and not ("has not answered" in ln and any("answers again" in a for a in lines))]
    if errors:
        raise RuntimeError(f"{name}: " + "\n".join(errors))
    if shot.crop is None:
        w, h = window_box(rgb)
        return np.ascontiguousarray(rgb[:h, :w])
    x0, y0, x1, y1 = shot.crop
    return np.ascontiguousarray(rgb[MENU + y0:MENU + y1, x0:x1])


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in SHOTS]
    if unknown:
        print(f"screenshots: no picture {', '.join(unknown)} (pictures: {', '.join(SHOTS)})",
              file=sys.stderr)
        return 2
    for tool in ("Xvfb", "xwd", PD):
        if not shutil.which(tool):
            print(f"screenshots: {tool} is missing (Debian: apt install xvfb x11-apps puredata)",
                  file=sys.stderr)
            return 1
    stale = [p for n in names or SHOTS for p in SHOTS[n].patches
             if not (BUILD / p).exists() or (BUILD / p).read_bytes() != (PD_DIR / p).read_bytes()]
    if stale:
        print(f"screenshots: build/unravel is older than pd/ ({', '.join(sorted(set(stale)))}): "
              "run make native first", file=sys.stderr)
        return 1
    record = recorded()
    with tempfile.TemporaryDirectory() as d, xvfb(90 + os.getpid() % 9) as display:
        for name in names or list(SHOTS):
            rgb = take(name, display, Path(d))
            png(DOCS / f"{name}.png", rgb)
            record[name + ".png"] = {"from": [f"pd/{p}" for p in SHOTS[name].patches],
                                     "sha256": fingerprint(name)}
            RECORD.write_text(json.dumps(dict(sorted(record.items())), indent=1) + "\n")
            print(f"wrote docs/{name}.png ({rgb.shape[1]}x{rgb.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
