"""Per-block decode/forward through unravel.model vs. the same TorchScript method called
directly (same module, same blocks, same thread count), interleaved rounds. Prints the
overhead ratio (goal <= 1.02). Run: .venv/bin/python bench/decode.py [MODEL]"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from unravel.model import load_model


def run_direct(fn, blocks) -> float:
    t = time.perf_counter()
    with torch.inference_mode():
        for b in blocks:
            fn(b)
    return time.perf_counter() - t


def run_unravel(model, method, blocks) -> float:
    t = time.perf_counter()
    for b in blocks:
        model.run(method, b)
    return time.perf_counter() - t


def run_numpy(model, method, blocks) -> float:
    f = getattr(model, method)
    arrays = [b[0].numpy() for b in blocks]
    t = time.perf_counter()
    for a in arrays:
        f(a)
    return time.perf_counter() - t


def main() -> int:
    spec = sys.argv[1] if len(sys.argv) > 1 else "default"
    model = load_model(spec, threads=1)
    print(f"model {model.path.name}: sr {model.sr}, dims {model.latent_dims}, ratio {model.ratio}, "
          f"threads {torch.get_num_threads()}")
    g = torch.Generator().manual_seed(0)
    cases = []
    for frames in (1, 4):  # nn~ buffer 2048 -> 1 latent frame per call; 8192 -> 4
        blocks = [torch.randn(1, model.latent_dims, frames, generator=g) for _ in range(50)]
        cases.append((f"decode {frames} frame(s)", "decode", blocks))
    for n in (2048, 8192):
        blocks = [0.3 * torch.randn(1, model.in_channels, n, generator=g) for _ in range(30)]
        cases.append((f"forward {n} samples", "forward", blocks))
    print(f"{'case':24} {'direct ms/block':>16} {'run ms/block':>13} {'run ratio':>10} {'numpy ratio':>12}")
    ratios = []
    for name, method, blocks in cases:
        fn = getattr(model.module, method)
        run_direct(fn, blocks[:5])
        times = {"direct": [], "run": [], "numpy": []}
        for r in range(15):  # interleaved rounds, order rotated each round
            order = [("direct", lambda: run_direct(fn, blocks)), ("run", lambda: run_unravel(model, method, blocks)),
                     ("numpy", lambda: run_numpy(model, method, blocks))]
            for key, f in order[r % 3:] + order[: r % 3]:
                times[key].append(f() / len(blocks))
        med = {k: float(np.median(v)) for k, v in times.items()}
        low = {k: min(v) for k, v in times.items()}
        ratios.append(low["run"] / low["direct"])
        print(f"{name:24} {med['direct'] * 1e3:16.3f} {med['run'] * 1e3:13.3f} "
              f"{med['run'] / med['direct']:10.3f} {med['numpy'] / med['direct']:12.3f}"
              f"   (best-of: run {low['run'] / low['direct']:.3f}, numpy {low['numpy'] / low['direct']:.3f})")
    print(f"overhead ratio (best-of rounds, worst case): {max(ratios):.3f} (goal <= 1.02)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
