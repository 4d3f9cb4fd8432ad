"""Bend ops on a 1M- and a 4M-element layer at 10% and 100%: ms per op and ms per 1M elements,
plus the ratio against a plain torch copy of the same layer (the baseline, same process).
Goal: < 2 ms per 1M elements. Run: .venv/bin/python bench/bend.py"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time
from typing import List

import torch
from torch import nn

from unravel.bend import Bender
from unravel.model import load_model


class Big(nn.Module):
    """A contract-following module with a 1M- and a 4M-element layer."""

    def __init__(self):
        super().__init__()
        self.small = nn.Parameter(torch.randn(1000, 1000))
        self.large = nn.Parameter(torch.randn(2000, 2000))
        self.register_buffer("forward_params", torch.tensor([1, 1, 1, 1]))

    @torch.jit.export
    def get_methods(self) -> List[str]:
        return ["forward"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.small[0, 0] + self.large[0, 0]


def timeit(fn, reps: int) -> float:
    """Median seconds per call."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main() -> int:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "big.ts"
        torch.jit.save(torch.jit.script(Big()), str(path))
        bender = Bender(load_model(path))
        params = dict(bender.model.module.named_parameters())
        worst = 0.0
        print(f"{'layer':6} {'n':>8} {'op':22} {'%':>4} {'ms/op':>8} {'ms/1M':>7} {'x copy':>7}")
        for layer in ("small", "large"):
            p = params[layer]
            n = p.numel()
            src = p.detach().clone()
            with torch.no_grad():
                base = timeit(lambda: p.copy_(src), 30)
            for percent in (10, 100):
                amounts = iter(range(10**9))
                cases = [
                    ("offset", lambda: bender.bend(layer, "offset", 1e-4 * (next(amounts) % 100), percent)),
                    ("spread", lambda: bender.bend(layer, "spread", 1 + 1e-3 * (next(amounts) % 100), percent)),
                    ("invert", lambda: bender.bend(layer, "invert", next(amounts) % 2, percent)),
                    ("zero", lambda: bender.bend(layer, "zero", 1 + next(amounts) % 2, percent)),
                    ("randomize (new seed)", lambda: bender.bend(layer, "randomize", 100, percent, seed=next(amounts))),
                    ("randomize (same seed)", lambda: bender.bend(layer, "randomize", 2 + next(amounts) % 1000, percent, seed=1)),
                    ("restore", lambda: (bender.bend(layer, "offset", 0.01, percent), bender.restore(layer))),
                ]
                for name, fn in cases:
                    bender.restore(layer)
                    fn()  # warm (captures originals, noise, indices)
                    t = timeit(fn, 15)
                    if name == "restore":
                        t -= timeit(lambda: bender.bend(layer, "offset", 0.01, percent), 15)
                    per_m = t * 1e3 / (n / 1e6)
                    if name != "randomize (new seed)":
                        worst = max(worst, per_m)
                    print(f"{layer:6} {n:8d} {name:22} {percent:4d} {t * 1e3:8.3f} {per_m:7.3f} {t / base:7.2f}")
            bender.restore()
        print(f"plain copy of 1M floats: {base * 1e3 / (n / 1e6):.3f} ms; worst op (excluding new-seed noise): "
              f"{worst:.3f} ms per 1M elements (goal < 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
