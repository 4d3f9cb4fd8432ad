"""Layer weights inside Pd: `bend` on a 1M-weight layer (goal < 2 ms), `get_weights` into a Pd
array vs. the list reply, `set_weights` from an array vs. a list, all timed with [realtime]
inside `pd -batch`. Baseline in this process: the backend's Bender on the same layer.

Usage: .venv/bin/python bench/pd_weights.py
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time
from typing import List

import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import Patch, run_pd  # noqa: E402

from unravel.bend import Bender  # noqa: E402
from unravel.model import load_model  # noqa: E402

LAYER = "big.weight"
N_BEND, N_GET = 50, 10
REPEAT = 3


class Big(nn.Module):
    """nn~ contract with one 1024 x 1024 layer (1,048,576 weights)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("forward_params", torch.tensor([1, 1, 1, 1]))
        self.big = nn.Linear(1024, 1024, bias=False)

    @torch.jit.export
    def get_methods(self) -> List[str]:
        return ["forward"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.big.weight[0, 0]


def timed(p: Patch, target: int, message: str, n: int, label: str) -> int:
    """[t b b b]: start [realtime], send `message` n times through [until], stop, print ms."""
    go = p.msg(str(n))
    t = p.obj("t b f b")
    p.connect(go, 0, t, 0)
    rt = p.obj("realtime")
    p.connect(t, 2, rt, 0)
    until = p.obj("until")
    p.connect(t, 1, until, 0)
    m = p.msg(message)
    p.connect(until, 0, m, 0)
    p.connect(m, 0, target, 0)
    p.connect(t, 0, rt, 1)
    div = p.obj(f"/ {n}")
    p.connect(rt, 0, div, 0)
    p.connect(div, 0, p.obj(f"print {label}"), 0)
    return go


def main() -> int:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        torch.jit.save(torch.jit.script(Big().eval()), str(d / "big.ts"))
        p = Patch()
        lb = p.obj("loadbang")
        u = p.obj("unravel~ big forward 2048")
        p.obj("table wa 10")
        route = p.obj("route layer")
        p.connect(u, 1, route, 0)
        ln = p.obj("list length")
        p.connect(route, 0, ln, 0)
        last = p.obj("f")
        p.connect(ln, 0, last, 1)
        steps = [
            timed(p, u, f"bend {LAYER} offset 0.01", N_BEND, "bend_ms"),
            timed(p, u, f"bend {LAYER} spread 1.5 50", N_BEND, "bend_percent_ms"),
            timed(p, u, f"get_weights {LAYER} wa", N_GET, "get_array_ms"),
            timed(p, u, f"get_weights {LAYER}", N_GET, "get_list_ms"),
            timed(p, u, f"set_weights {LAYER} wa", N_GET, "set_array_ms"),
        ]
        warm = p.msg(f"bend {LAYER} offset 0, get_weights {LAYER} wa")   # first use keeps the originals
        p.connect(warm, 0, u, 0)
        steps.insert(0, warm)
        seq = p.obj("t " + " ".join(["b"] * (len(steps) + 2)))
        p.connect(lb, 0, seq, 0)
        for i, s in enumerate(steps):
            p.connect(seq, len(steps) + 1 - i, s, 0)
        p.connect(seq, 1, last, 0)
        p.connect(last, 0, p.obj("print list_length"), 0)
        q = p.msg("; pd quit")
        p.connect(seq, 0, q, 0)
        patch = p.write(d / "weights.pd")
        vals: dict[str, float] = {}
        for _ in range(REPEAT):       # a shared machine: keep each figure's minimum
            r = run_pd(patch, timeout=300, env={"OMP_NUM_THREADS": "1"})
            for line in r.lines:
                k = line.split(":")[0]
                if ":" in line and k in ("bend_ms", "bend_percent_ms", "get_array_ms", "get_list_ms",
                                         "set_array_ms", "list_length"):
                    vals[k] = min(vals.get(k, float("inf")), float(line.split(":", 1)[1]))
            if len(vals) < 6:
                print("\n".join(r.lines)[-3000:])
                return 1
        # baseline: the backend's Bender in this process
        m = load_model(d / "big.ts")
        b = Bender(m)
        b.bend(LAYER, "offset", 0.0)
        py_bend = py_get = float("inf")
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            for _ in range(N_BEND):
                b.bend(LAYER, "offset", 0.01)
            py_bend = min(py_bend, (time.perf_counter() - t0) / N_BEND * 1000)
            t0 = time.perf_counter()
            for _ in range(N_GET):
                b.get_weights(LAYER)
            py_get = min(py_get, (time.perf_counter() - t0) / N_GET * 1000)
    print(f"layer {LAYER}: 1,048,576 weights (the list reply carried {vals['list_length']:.6g} floats as Pd prints it)")
    print(f"bend offset in Pd: {vals['bend_ms']:.2f} ms (goal < 2 ms); Bender.bend in Python: {py_bend:.2f} ms; "
          f"ratio {vals['bend_ms'] / py_bend:.2f}")
    print(f"bend spread 50% in Pd: {vals['bend_percent_ms']:.2f} ms")
    print(f"get_weights -> array: {vals['get_array_ms']:.2f} ms; -> list reply: {vals['get_list_ms']:.2f} ms; "
          f"list / array {vals['get_list_ms'] / vals['get_array_ms']:.1f}x; Bender.get_weights in Python {py_get:.2f} ms")
    print(f"set_weights <- array: {vals['set_array_ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
