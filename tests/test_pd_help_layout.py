"""The layout of the help patches and examples (issue 11): every window (patch and subpatch)
fits in 1000x700, every box lies inside its window, and no two boxes or comments overlap.

Box sizes are measured as Pd 0.55 draws them at font size 12 (DejaVu Sans Mono: 7 px per
character, 16 px per line; boxes wrap at 60 characters, comments at their width `f N`);
panel abstractions ([bender], [chns0n]...) take the size of their graph-on-parent area."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pdrun import ROOT

PD_DIR = ROOT / "pd"
HELP = ["unravel~-help.pd", "bender-help.pd", "chns0n-help.pd", "ch4ns0n-help.pd", "ch8ns0n-help.pd"]
EXAMPLES = sorted(f"examples/{p.name}" for p in (PD_DIR / "examples").glob("*.pd"))
CW, LH = 7, 16
MAX_W, MAX_H = 1000, 700


@dataclass
class Box:
    kind: str
    x: int
    y: int
    w: int
    h: int
    text: str

    def overlaps(self, o: "Box") -> bool:
        return (self.x < o.x + o.w and o.x < self.x + self.w and
                self.y < o.y + o.h and o.y < self.y + self.h)


@dataclass
class Window:
    name: str
    w: int
    h: int
    boxes: list[Box] = field(default_factory=list)


def _records(text: str) -> list[list[str]]:
    """The patch's records (split at unescaped ';'), each as its atoms."""
    out, cur = [], ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i:i + 2]
            i += 2
            continue
        if ch == ";":
            out.append(cur.split())
            cur = ""
        else:
            cur += ch
        i += 1
    return [r for r in out if r]


def _lines(words: list[str], width: int) -> list[str]:
    """Pd's word wrap of `words` at `width` characters; '\\;' ends a line too."""
    lines, cur = [], ""
    for w in words:
        shown = w.replace("\\", "")
        if shown in (",", ";") and cur:       # Pd shows 'a \, b' as 'a, b'
            cur += shown
        elif cur and len(cur) + 1 + len(shown) > width:
            lines.append(cur)
            cur = shown
        else:
            cur = f"{cur} {shown}" if cur else shown
        if w.endswith("\\;"):
            lines.append(cur)
            cur = ""
    if cur or not lines:
        lines.append(cur)
    return lines


def _gop_size(name: str) -> tuple[int, int] | None:
    """The graph-on-parent size of one of our panel abstractions (None: not a panel)."""
    f = PD_DIR / f"{name}.pd"
    if not f.exists():
        return None
    for r in _records(f.read_text()):
        if r[:2] == ["#X", "coords"] and len(r) >= 9 and r[8] != "0":
            return int(float(r[6])), int(float(r[7]))
    return None


def _box(r: list[str]) -> Box | None:
    kind, x, y, args = r[1], int(float(r[2])), int(float(r[3])), r[4:]
    width = 60
    if len(args) >= 3 and args[-2] == "f" and args[-3].endswith(","):   # 'word, f N': the width
        width, args = int(args[-1]), args[:-3] + [args[-3][:-1]]
    if kind == "text":
        lines = _lines(args, width)
        return Box(kind, x, y, CW * max(len(ln) for ln in lines) + 4, LH * len(lines) + 4, " ".join(args))
    if kind in ("floatatom", "symbolatom"):
        return Box(kind, x, y, CW * int(args[0]) + 6, 21, kind)
    if kind == "obj" and args:
        name = args[0]
        if name == "cnv":
            return None                 # backgrounds and separators
        if name in ("bng", "tgl"):
            return Box(kind, x, y, int(args[1]), int(args[1]), name)
        if name in ("hsl", "hslider"):
            return Box(kind, x, y, int(args[1]), int(args[2]), name)
        if name == "nbx":
            return Box(kind, x, y, CW * int(args[1]) + int(args[2]) // 2 + 6, int(args[2]), name)
        gop = _gop_size(name)
        if gop:
            return Box(kind, x, y, gop[0], gop[1], name)
    lines = _lines(args, width)
    return Box(kind, x, y, CW * max(len(ln) for ln in lines) + 8, LH * len(lines) + 5, " ".join(args))


def parse(path: Path) -> list[Window]:
    """Every window of the patch (the patch, its subpatches) with its boxes."""
    stack: list[Window] = []
    done: list[Window] = []
    graph_size: list[tuple[int, int]] = []
    for r in _records(path.read_text()):
        if r[:2] == ["#N", "canvas"]:
            name = r[6] if len(r) > 7 else path.name
            stack.append(Window(f"{path.name}:{name}", int(r[4]), int(r[5])))
            graph_size.append((0, 0))
        elif r[:2] == ["#X", "coords"] and len(r) >= 9:
            graph_size[-1] = (int(float(r[6])), int(float(r[7]))) if r[8] != "0" else (0, 0)
        elif r[:2] == ["#X", "restore"]:
            win, (gw, gh) = stack.pop(), graph_size.pop()
            x, y = int(float(r[2])), int(float(r[3]))
            if r[4] == "graph":
                stack[-1].boxes.append(Box("graph", x, y, gw, gh, "graph"))
            else:
                done.append(win)
                label = " ".join(r[4:])
                stack[-1].boxes.append(Box("obj", x, y, CW * len(label) + 8, LH + 5, label))
        elif r[0] == "#X" and r[1] in ("obj", "msg", "text", "floatatom", "symbolatom"):
            b = _box(r)
            if b:
                stack[-1].boxes.append(b)
    return stack + done


def problems(path: Path) -> list[str]:
    out = []
    for win in parse(path):
        if win.name.endswith(":(subpatch)"):
            continue                    # an array's own canvas: never opened as a window
        if win.w > MAX_W or win.h > MAX_H:
            out.append(f"{win.name}: window {win.w}x{win.h} is larger than {MAX_W}x{MAX_H}")
        for b in win.boxes:
            if b.x + b.w > win.w or b.y + b.h > win.h:
                out.append(f"{win.name}: '{b.text[:40]}' at {b.x},{b.y} ({b.w}x{b.h}) "
                           f"leaves the {win.w}x{win.h} window")
        for i, a in enumerate(win.boxes):
            for b in win.boxes[i + 1:]:
                if a.overlaps(b):
                    out.append(f"{win.name}: '{a.text[:40]}' at {a.x},{a.y} overlaps "
                               f"'{b.text[:40]}' at {b.x},{b.y}")
    return out


@pytest.mark.parametrize("name", HELP + EXAMPLES)
def test_layout(name):
    assert problems(PD_DIR / name) == []


def test_the_check_sees_an_overlap(tmp_path):
    """The control: two comments on top of each other, a window too wide."""
    p = tmp_path / "bad.pd"
    p.write_text("#N canvas 0 50 1200 400 12;\n#X text 10 10 hello world;\n"
                 "#X text 20 12 again;\n#X msg 1150 10 far away;\n")
    got = problems(p)
    assert any("larger than" in g for g in got)
    assert any("overlaps" in g for g in got)
    assert any("leaves" in g for g in got)


def test_help_has_the_vanilla_parts():
    """Title, [pd reference] with INLETS/OUTLETS, see also, updated for."""
    for name in HELP:
        text = (PD_DIR / name).read_text()
        for part in ("pd reference", "INLET", "OUTLET", "see also:", "updated for", "<= click"):
            assert part in text, (name, part)
