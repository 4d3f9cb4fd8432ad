"""The layout of the help patches and examples (issue 11): every window (patch and subpatch)
fits in 1000x700, every box lies inside its window, and no two boxes or comments overlap;
no cord passes through a box it does not connect (issue 25).

Box sizes are measured as Pd 0.55 draws them at font size 12 (DejaVu Sans Mono: 7 px per
character, 16 px per line; boxes wrap at 60 characters, comments at their width `f N`): an
object box 7 px a character (3 at least) + 4, here + 8; a message box the same + its flag,
a quarter of its height (Pd's text_drawborder). Checked once against a GUI run (Xvfb, the
pixels of each box's border): the estimates are 1 to 3 px wider, never narrower, and the
heights (16 px a line + 5) exact;
panel abstractions ([bender], [chns0n]...) take the size of their graph-on-parent area.
A cord runs from its outlet's middle (the box's bottom edge) to its inlet's (the top edge),
Pd spreading n iolets 7 px wide evenly over the box's width; the counts come from the
object's arguments for the vanilla objects our patches use, our abstractions' files, and
otherwise the highest iolet the patch connects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pdrun import BUILD, ROOT, run_pd

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
    objects: list[Box | None] = field(default_factory=list)   # by Pd's index (cnv: None)
    cords: list[tuple[int, int, int, int]] = field(default_factory=list)


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
    depth = 0
    for r in _records(f.read_text()):      # the abstraction's own canvas, not a graph in it
        if r[:2] == ["#N", "canvas"]:
            depth += 1
        elif r[:2] == ["#X", "restore"]:
            depth -= 1
        elif depth == 1 and r[:2] == ["#X", "coords"] and len(r) >= 9 and r[8] != "0":
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
    h = LH * len(lines) + 5
    chars = max(len(ln) for ln in lines)
    if kind == "msg":                   # the flag: a quarter of the height right of the text
        return Box(kind, x, y, CW * chars + 6 + h // 4, h, " ".join(args))
    return Box(kind, x, y, CW * max(chars, 3) + 8, h, " ".join(args))    # 3 characters at least


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
                b = Box("graph", x, y, gw, gh, "graph")
            else:
                done.append(win)
                label = " ".join(r[4:])
                b = Box("obj", x, y, CW * len(label) + 8, LH + 5, label)
            stack[-1].boxes.append(b)
            stack[-1].objects.append(b)
        elif r[0] == "#X" and r[1] in ("obj", "msg", "text", "floatatom", "symbolatom"):
            b = _box(r)
            if b:
                stack[-1].boxes.append(b)
            stack[-1].objects.append(b)
        elif r[:2] == ["#X", "connect"]:
            stack[-1].cords.append(tuple(int(v) for v in r[2:6]))
    return stack + done


IOW = 7     # an inlet's or outlet's width


def _abstraction_iolets(name: str) -> tuple[int, int] | None:
    """(inlets, outlets) of one of our abstractions (None: not one)."""
    f = PD_DIR / f"{name}.pd"
    if not f.exists():
        return None
    depth, n = 0, [0, 0]
    for r in _records(f.read_text()):
        if r[:2] == ["#N", "canvas"]:
            depth += 1
        elif r[:2] == ["#X", "restore"]:
            depth -= 1
        elif depth == 1 and r[:2] == ["#X", "obj"] and len(r) > 4:
            if r[4] in ("inlet", "inlet~"):
                n[0] += 1
            elif r[4] in ("outlet", "outlet~"):
                n[1] += 1
    return n[0], n[1]


def iolets(b: Box, used_in: int, used_out: int) -> tuple[int, int]:
    """(inlets, outlets) of box b; `used_*`: the highest index the patch connects, plus 1."""
    if b.kind in ("msg", "floatatom", "symbolatom"):
        return 1, 1
    if b.kind == "graph" or b.kind == "text":
        return 0, 0
    args = b.text.split()
    name, k = (args[0] if args else ""), len(args) - 1
    if name in ("list",) and k >= 1:
        name = f"list {args[1]}"
    known = {"t": (1, k), "trigger": (1, k), "route": (2 if k == 1 else 1, k + 1),
             "sel": (2 if k == 1 else 1, k + 1), "select": (2 if k == 1 else 1, k + 1),
             "pack": (max(k, 2), 1), "unpack": (1, max(k, 2)), "dac~": (max(k, 2), 0),
             "list split": (2, 3), "list append": (2, 1), "list prepend": (2, 1),
             "symbol": (2, 1), "f": (2, 1), "float": (2, 1), "spigot": (2, 1), "moses": (2, 2),
             "file": (1, 2), "tabplay~": (1, 2)}
    n = known.get(name) or _abstraction_iolets(name)
    if n is None:
        return used_in, used_out
    return max(n[0], used_in), max(n[1], used_out)


def _iolet_x(b: Box, k: int, n: int) -> float:
    return b.x + ((b.w - IOW) * k / (n - 1) if n > 1 else 0) + IOW / 2


def _crosses(p: tuple[float, float], q: tuple[float, float], b: Box) -> bool:
    """Whether the segment p-q passes through box b's inside (1 px in from its edges)."""
    x0, y0, x1, y1 = b.x + 1, b.y + 1, b.x + b.w - 1, b.y + b.h - 1
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for d, lo, hi, v in ((dx, x0, x1, p[0]), (dy, y0, y1, p[1])):
        if d == 0:
            if not lo < v < hi:
                return False
            continue
        a, c = (lo - v) / d, (hi - v) / d
        t0, t1 = max(t0, min(a, c)), min(t1, max(a, c))
        if t0 >= t1:
            return False
    return True


def crossings(win: Window) -> list[str]:
    """'<cord> crosses <box>' for each cord of the window through a box it does not connect
    (comments aside)."""
    used: dict[tuple[int, str], int] = {}
    for a, o, b, i in win.cords:
        used[(a, "out")] = max(used.get((a, "out"), 0), o + 1)
        used[(b, "in")] = max(used.get((b, "in"), 0), i + 1)
    out = []
    for a, o, b, i in win.cords:
        src, dst = win.objects[a], win.objects[b]
        if src is None or dst is None:
            continue
        nout = iolets(src, used.get((a, "in"), 1), used.get((a, "out"), 1))[1]
        nin = iolets(dst, used.get((b, "in"), 1), used.get((b, "out"), 1))[0]
        p = (_iolet_x(src, o, nout), src.y + src.h)
        q = (_iolet_x(dst, i, nin), dst.y)
        for c in win.boxes:
            if c is src or c is dst or c.kind == "text":
                continue
            if _crosses(p, q, c):
                out.append(f"{win.name}: the cord '{src.text[:30]}' {o} -> '{dst.text[:30]}' {i} "
                           f"crosses '{c.text[:30]}' at {c.x},{c.y}")
    return out


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


def all_crossings(path: Path) -> list[str]:
    return [c for win in parse(path) if not win.name.endswith(":(subpatch)") for c in crossings(win)]


@pytest.mark.parametrize("name", HELP + EXAMPLES)
def test_layout(name):
    assert problems(PD_DIR / name) == []


@pytest.mark.parametrize("name", HELP + EXAMPLES)
def test_no_cord_through_a_box(name):
    """Issue 25: none left (before: 145 in unravel~-help, 30 in 3-render, 12 in
    2-composition, 5 in 4-diffusion, 2 in 1-bending, 1 in each player's help)."""
    assert all_crossings(PD_DIR / name) == []


def test_the_check_sees_a_cord_through_a_box(tmp_path):
    """The control: [t b b] above [f] above [print]: the cord from [t b b] to [print] runs
    through [f]; from the right outlet to a [print] right of [f] (3 characters wide, as Pd
    draws a box of fewer), it does not."""
    p = tmp_path / "cord.pd"
    body = "#N canvas 0 50 400 300 12;\n#X obj 10 10 t b b;\n#X obj 10 50 f;\n#X obj 10 90 print;\n"
    p.write_text(body + "#X connect 0 0 2 0;\n")
    assert len(all_crossings(p)) == 1 and "crosses 'f'" in all_crossings(p)[0]
    p.write_text(body.replace("10 90 print", "60 90 print") + "#X connect 0 1 2 0;\n#X connect 0 0 1 0;\n")
    assert all_crossings(p) == []


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


def _see_also(name: str) -> list[tuple[str, str, int, int]]:
    """(canvas to send to, object, x, y) of each box under 'see also:' in help patch `name`:
    the footer's object boxes and those in its [pd see-also]."""
    wins = parse(PD_DIR / name)
    main = next(w for w in wins if w.name == f"{name}:{name}")
    y = next(b.y for b in main.boxes if b.kind == "text" and b.text == "see also:")
    out = [(f"pd-{name}", b.text, b.x, b.y) for b in main.boxes
           if b.kind == "obj" and b.y == y and not b.text.startswith("pd ")]
    sub = next(w for w in wins if w.name == f"{name}:see-also")
    return out + [("pd-see-also", b.text, b.x, b.y) for b in sub.boxes if b.kind == "obj"]


@pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(), reason="the external is not built")
@pytest.mark.parametrize("name", HELP)
def test_see_also_opens_each_help(name, tmp_path):
    """'See also' as Pd's reference patches have it: plain object boxes whose right-click >
    Help (Pd's 'done-popup 2' at the box) opens their help patch; the panel abstractions in
    [pd see-also]. After each click the help patch it opened is closed (Pd says 'no such
    object' when there is none); at the end none is open: each of the others is named once."""
    targets = _see_also(name)
    assert sorted(t[1] for t in targets) == sorted(ALSO[name])
    clicks = " \\; ".join(f"{canvas} done-popup 2 {x + 5} {y + 5} \\; pd-{obj}-help.pd menuclose 1"
                           for canvas, obj, x, y in targets)
    others = [h for h in ALL if f"{h}-help.pd" != name]
    shown = " \\; ".join(f"pd-{h}-help.pd vis 0" for h in others)
    patch = tmp_path / "click.pd"
    patch.write_text("#N canvas 0 50 450 300 12;\n#X obj 10 10 loadbang;\n"
                     f"#X msg 10 40 \\; pd open {name} {BUILD};\n#X obj 10 70 delay 2000;\n"
                     f"#X msg 10 100 \\; {clicks};\n#X obj 10 130 delay 1000;\n"
                     f"#X msg 10 160 \\; {shown} \\; pd quit;\n"
                     "#X connect 0 0 1 0;\n#X connect 0 0 2 0;\n#X connect 2 0 3 0;\n"
                     "#X connect 2 0 4 0;\n#X connect 4 0 5 0;\n")
    r = run_pd(patch, env={"HOME": str(tmp_path)}, timeout=120)
    missing = sorted(ln.split(":")[1].strip() for ln in r.errors if "no such object" in ln)
    assert missing == sorted(f"pd-{h}-help.pd" for h in others), r.lines
    assert len(r.errors) == len(others), r.errors


ALL = ["unravel~", "bender", "chns0n", "ch4ns0n", "ch8ns0n"]
ALSO = {"unravel~-help.pd": ["bender", "chns0n", "ch8ns0n"], "bender-help.pd": ["unravel~", "chns0n"],
        "chns0n-help.pd": ["ch4ns0n", "ch8ns0n", "unravel~"],
        "ch4ns0n-help.pd": ["chns0n", "ch8ns0n", "unravel~"],
        "ch8ns0n-help.pd": ["chns0n", "ch4ns0n", "unravel~"]}
