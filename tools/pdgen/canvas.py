"""A tiny writer for Pd patch text: a Canvas of named objects and connections.

Objects get names; connections use names; GUI helpers write Pd 0.55's IEM GUI lines."""

from __future__ import annotations


def esc(text: str) -> str:
    """Pd's escaping for box text: $ ; , (spaces stay separators)."""
    text = text.replace("$", "\\$")
    for ch in ";,":
        text = text.replace(" " + ch, ch).replace(ch, f" \\{ch}")
    return text.strip()


def label(text: str) -> str:
    """A GUI label or name field: spaces escaped, 'empty' when none."""
    return esc(text).replace(" ", "\\ ") if text else "empty"


BG, FG, LB = "#fcfcfc", "#000000", "#000000"


class Canvas:
    """One canvas (patch or subpatch); `lines` are body lines without ';'."""

    def __init__(self, w: int = 600, h: int = 500, font: int = 12, x: int = 0, y: int = 50,
                 name: str | None = None):
        self.head = (f"#N canvas {x} {y} {w} {h} {esc(name)} 0" if name is not None
                     else f"#N canvas {x} {y} {w} {h} {font}")
        self.w, self.h = w, h
        self.items: list[str] = []      # each an already-rendered (maybe multi-line) item
        self.names: dict[str, int] = {}
        self.conns: list[str] = []
        self.tail: list[str] = []
        self.declares: list[str] = []   # '#X declare ...' lines (right after the header)
        self.inlet_alias: dict[str, str] = {}
        # auto-placement for logic objects
        self.ax, self.ay, self.col = 10, 10, 0

    def _add(self, line: str, name: str | None) -> str:
        idx = len(self.items)
        self.items.append(line)
        key = name or f"_{idx}"
        assert key not in self.names, key
        self.names[key] = idx
        return key

    def at(self, x: int, y: int) -> None:
        """Move the auto-placement cursor."""
        self.ax, self.ay = x, y

    def _pos(self, x, y):
        if x is None:
            x, y = self.ax, self.ay
            self.ay += 25
        return x, y

    def obj(self, text: str, name: str | None = None, x=None, y=None) -> str:
        x, y = self._pos(x, y)
        return self._add(f"#X obj {x} {y} {esc(text)}", name)

    def msg(self, text: str, name: str | None = None, x=None, y=None) -> str:
        """A message box. Message boxes don't expand $0, so a text with $0 gets a
        [list prepend $0] in front ($0 becomes $1, $1 becomes $2, ...)."""
        x, y = self._pos(x, y)
        if "$0" not in text:
            return self._add(f"#X msg {x} {y} {esc(text)}", name)
        for k in range(9, -1, -1):
            text = text.replace(f"${k}", f"${k + 1}")
        pre = self._add(f"#X obj {x} {y} list prepend \\$0", None)
        key = self._add(f"#X msg {x + 140} {y} {esc(text)}", name)
        self.connect(pre, 0, key, 0)
        self.inlet_alias[key] = pre
        return key

    def text(self, x: int, y: int, text: str, width: int | None = None) -> str:
        assert ";" not in text, text        # a ';' breaks a comment's line in Pd
        w = f", f {width}" if width else ""
        return self._add(f"#X text {x} {y} {esc(text)}{w}", None)

    def floatatom(self, x, y, width=6, rcv="", lbl="", name=None, pos=0, snd="") -> str:
        return self._add(f"#X floatatom {x} {y} {width} 0 0 {pos} {label(lbl) if lbl else '-'} "
                         f"{esc(rcv) or '-'} {esc(snd) or '-'} 0", name)

    def symbolatom(self, x, y, width=10, rcv="", lbl="", name=None, pos=0) -> str:
        return self._add(f"#X symbolatom {x} {y} {width} 0 0 {pos} {label(lbl) if lbl else '-'} "
                         f"{esc(rcv) or '-'} - 0", name)

    def bng(self, x, y, rcv="", lbl="", name=None, size=19, snd="") -> str:
        return self._add(f"#X obj {x} {y} bng {size} 250 50 0 {label(snd)} {label(rcv)} {label(lbl)} "
                         f"{size + 4} {size // 2} 0 12 {BG} {FG} {LB}", name)

    def tgl(self, x, y, rcv="", lbl="", name=None, size=19, nonzero=1, snd="") -> str:
        return self._add(f"#X obj {x} {y} tgl {size} 0 {label(snd)} {label(rcv)} {label(lbl)} "
                         f"{size + 4} {size // 2} 0 12 {BG} {FG} {LB} 0 {nonzero}", name)

    def hsl(self, x, y, lo, hi, rcv="", lbl="", name=None, w=130, h=17, snd="") -> str:
        return self._add(f"#X obj {x} {y} hsl {w} {h} {lo} {hi} 0 0 {label(snd)} {label(rcv)} {label(lbl)} "
                         f"-2 -8 0 11 {BG} {FG} {LB} 0 1", name)

    def vradio(self, x, y, n, rcv="", lbl="", name=None, size=17, snd="") -> str:
        """A vertical radio of n cells (outputs the cell's number, 0 at the top)."""
        return self._add(f"#X obj {x} {y} vradio {size} 1 0 {n} {label(snd)} {label(rcv)} {label(lbl)} "
                         f"0 -8 0 11 {BG} {FG} {LB} 0", name)

    def listbox(self, x, y, width=10, rcv="", lbl="", name=None, pos=0) -> str:
        """A list box (a list of atoms, typed in)."""
        return self._add(f"#X listbox {x} {y} {width} 0 0 {pos} {label(lbl) if lbl else '-'} "
                         f"{esc(rcv) or '-'} - 0", name)

    def nbx(self, x, y, rcv="", lbl="", name=None, width=6, lo=-1e37, hi=1e37) -> str:
        return self._add(f"#X obj {x} {y} nbx {width} 17 {lo:g} {hi:g} 0 0 empty {label(rcv)} "
                         f"{label(lbl)} 0 -8 0 11 {BG} {FG} {LB} 0 256", name)

    def cnv(self, x, y, w, h, lbl="", color="#e0e0e0", name=None, fs=12, sel=15, rcv="") -> str:
        """A [cnv] of w x h; `sel`: the size of its selectable corner; `rcv`: its receive name
        (e.g. for 'label <text>')."""
        return self._add(f"#X obj {x} {y} cnv {sel} {w} {h} empty {label(rcv)} {label(lbl)} 6 10 0 {fs} "
                         f"{color} #404040 0", name)

    def graph(self, x, y, array: str, size: int, w: int, h: int, ylo: float, yhi: float,
              flags: int = 0, name=None) -> str:
        body = (f"#N canvas 0 50 450 250 (subpatch) 0;\n"
                f"#X array {esc(array)} {size} float {flags};\n"
                f"#X coords 0 {yhi:g} {size} {ylo:g} {w} {h} 1 0 0;\n"
                f"#X restore {x} {y} graph")
        return self._add(body, name)

    def sub(self, x, y, title: str, canvas: "Canvas", name=None) -> str:
        return self._add(canvas.render(restore=f"#X restore {x} {y} pd {esc(title)}")[:-1], name)

    def declare(self, x: int, y: int, args: str) -> str:
        """A [declare args] object; Pd applies the '#X declare' line it saves beside it."""
        self.declares.append(f"#X declare {esc(args)}")
        return self.obj(f"declare {args}", None, x, y)

    def connect(self, a: str, outlet: int, b: str, inlet: int = 0) -> None:
        b = self.inlet_alias.get(b, b) if inlet == 0 else b
        self.conns.append(f"#X connect {self.names[a]} {outlet} {self.names[b]} {inlet}")

    def chain(self, *names: str) -> None:
        """Connect outlet 0 of each to inlet 0 of the next."""
        for a, b in zip(names, names[1:]):
            self.connect(a, 0, b, 0)

    def gop(self, w: int, h: int, hide: bool = True, mx: int = 0, my: int = 0, on: bool = True) -> None:
        """Graph on parent, w x h (`on` False: the area is kept but the canvas is not a graph,
        so that a `coords` message can turn it on later)."""
        self.tail.append(f"#X coords 0 -1 1 1 {w} {h} {(2 if hide else 1) if on else 0} {mx} {my}")

    def render(self, restore: str | None = None) -> str:
        lines = [self.head] + self.declares + self.items + self.conns + self.tail
        if restore:
            lines.append(restore)
        return "\n".join(ln + ";" for ln in lines) + ("" if restore else "\n")
