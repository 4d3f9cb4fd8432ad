"""Per-block decode/forward through unravel.model vs. the same TorchScript method called
directly (same module, same blocks, same thread count), interleaved rounds. Prints the
overhead ratio (goal <= 1.02); "worker" = Model.run called from a thread already in inference
mode, "numpy" = Model.decode/forward on numpy arrays. On a GPU (--device) both sides copy each
block there and back, as [unravel~]'s model thread does.
Run: .venv/bin/python bench/decode.py [MODEL] [--device cpu|cuda|cuda:N|mps|auto]"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from unravel import device as device_io
from unravel.model import load_model


def run_direct(fn, blocks, device: torch.device = torch.device("cpu")) -> float:
    t = time.perf_counter()
    with torch.inference_mode():
        for b in blocks:
            if device.type == "cpu":
                fn(b)
            else:
                fn(b.to(device)).cpu()
    return time.perf_counter() - t


def run_unravel(model, method, blocks) -> float:
    t = time.perf_counter()
    for b in blocks:
        model.run(method, b)
    return time.perf_counter() - t


def run_unravel_in_inference(model, method, blocks) -> float:
    """As a worker thread that enters inference mode once would call it."""
    with torch.inference_mode():
        return run_unravel(model, method, blocks)


def run_numpy(model, method, blocks) -> float:
    f = getattr(model, method)
    arrays = [b[0].numpy() for b in blocks]
    t = time.perf_counter()
    for a in arrays:
        f(a)
    return time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default="default")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    model = load_model(args.model, threads=1, device=args.device)
    dev = model.device
    print(f"model {model.path.name}: sr {model.sr}, dims {model.latent_dims}, ratio {model.ratio}, "
          f"threads {torch.get_num_threads()}, device {device_io.name(dev)}")
    g = torch.Generator().manual_seed(0)
    cases = []
    for frames in (1, 4):  # nn~ buffer 2048 -> 1 latent frame per call; 8192 -> 4
        blocks = [torch.randn(1, model.latent_dims, frames, generator=g) for _ in range(50)]
        cases.append((f"decode {frames} frame(s)", "decode", blocks))
    for n in (2048, 8192):
        blocks = [0.3 * torch.randn(1, model.in_channels, n, generator=g) for _ in range(30)]
        cases.append((f"forward {n} samples", "forward", blocks))
    print(f"{'case':24} {'device':>7} {'direct ms/block':>16} {'run ratio':>10} {'run (worker) ratio':>19} {'numpy ratio':>12}"
          f" {'run - direct us':>16}")
    worst = 0.0
    for name, method, blocks in cases:
        fn = getattr(model.module, method)
        run_direct(fn, blocks[:5], dev)
        fns = {"direct": lambda: run_direct(fn, blocks, dev), "run": lambda: run_unravel(model, method, blocks),
               "worker": lambda: run_unravel_in_inference(model, method, blocks),
               "numpy": lambda: run_numpy(model, method, blocks)}
        keys = list(fns)
        times = {k: [] for k in keys}
        for r in range(40):  # interleaved rounds, order rotated each round
            for k in keys[r % 4:] + keys[: r % 4]:
                times[k].append(fns[k]() / len(blocks))
        d = np.array(times["direct"])
        ratio = {k: float(np.median(np.array(times[k]) / d)) for k in keys}  # median of per-round ratios
        worst = max(worst, ratio["run"])
        extra = float(np.median(np.array(times["run"]) - d)) * 1e6
        print(f"{name:24} {device_io.name(dev):>7} {np.median(d) * 1e3:16.3f} {ratio['run']:10.3f} {ratio['worker']:19.3f} {ratio['numpy']:12.3f}"
              f" {extra:16.1f}")
    print(f"worst overhead ratio of Model.run (median of interleaved rounds): {worst:.3f} (goal <= 1.02)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
