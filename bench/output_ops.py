"""Output ops in the graph (issue 23 part 2, unravel.outops): for each model, layer and method,
the time to build the rewritten method (inline + insert) and its first two calls (TorchScript's
profiling executor compiles then; Bender warms it on a copy), whether offset 0 gives the
original method's output bit for bit (8 calls, two copies of the module, the same random
seed before each call), and the cost per call against the original method: interleaved
calls, one torch thread, medians and the median of pairwise ratios. `--live MODEL:LAYER`: a
thread plays `forward` on 2048-sample blocks back to back (as [unravel~]'s model thread,
which needs the GIL once per block) while the main thread sets the first output op
(`Bender.output`: rebuild and warm-up); the longest gap between two blocks before and
during, and how long the message took."""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import torch

from unravel import modelcache, outops
from unravel.bend import Bender
from unravel.model import load_model


def measure(path: str, layer: str, method: str, calls: int, frames: int) -> str:
    m = load_model(path)      # warmed up, as a playing object's (its methods compiled)
    cmod = m._cmod
    t = time.perf_counter()
    amount = torch.zeros(())
    fn, changed = outops.build(cmod, method, {outops.module_path(layer): {"offset": [amount]}})
    build = time.perf_counter() - t
    if not changed:
        return f"{os.path.basename(path)} {layer} {method}: not called"
    orig = modelcache.jit_copy(cmod)
    mine = modelcache.jit_copy(cmod)
    own = orig._get_method(method)
    defaults = [a.default_value for a in own.schema.arguments[2:]]
    mp = m.methods[method]
    n = frames * mp.step(m.ratio) if mp.in_ratio == 1 else frames
    g = torch.Generator().manual_seed(0)
    exact, first = True, []
    with torch.inference_mode():
        for i in range(8):
            x = torch.randn(1, mp.in_channels, n, generator=g)
            torch.manual_seed(i)
            a = own(x, *defaults)
            torch.manual_seed(i)
            t = time.perf_counter()
            b = fn(x, mine)
            if i < 2:
                first.append(time.perf_counter() - t)
            exact = exact and a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))
        ta, tb = [], []
        for _ in range(calls):
            t = time.perf_counter()
            own(x, *defaults)
            ta.append(time.perf_counter() - t)
            t = time.perf_counter()
            fn(x, mine)
            tb.append(time.perf_counter() - t)
    pair = statistics.median(b / a for a, b in zip(ta, tb))
    return (f"| {os.path.basename(path)} | {layer} | {method} | {build * 1e3:.0f} | "
            f"{sum(first) * 1e3:.0f} | {'yes' if exact else 'NO'} | {statistics.median(ta) * 1e3:.2f} | "
            f"{statistics.median(tb) * 1e3:.2f} | {pair:.3f} |")


def live(path: str, layer: str) -> str:
    m = load_model(path)
    x = torch.zeros(1, m.in_channels, 2048)
    gaps: list[float] = []
    stop = threading.Event()

    def play() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            m.run("forward", x)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    th = threading.Thread(target=play)
    th.start()
    time.sleep(2)
    before = len(gaps)
    t = time.perf_counter()
    Bender(m).output(layer, "offset", [0.0])
    took = time.perf_counter() - t
    stop.set()
    th.join()
    return (f"{os.path.basename(path)} {layer}: block median {statistics.median(gaps[:before]) * 1e3:.1f} ms, "
            f"longest gap before {max(gaps[10:before]) * 1e3:.1f} ms, during the message "
            f"{max(gaps[before:]) * 1e3:.1f} ms; the message took {took * 1e3:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", nargs="*", default=["default:decoder.net.6", "default:encoder.net.10"],
                    metavar="MODEL:LAYER")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--frames", type=int, default=8, help="latent frames per call")
    ap.add_argument("--live", nargs="*", default=[], metavar="MODEL:LAYER")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("| model | layer | method | build ms | first 2 calls ms | offset 0 bit-identical | "
          "original ms | with the op ms | pairwise ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in a.cases:
        path, layer = case.rsplit(":", 1)
        m = load_model(path, warmup=False)
        for method in m.methods:
            if method in ("encode", "decode", "forward"):
                print(measure(path, layer, method, a.calls, a.frames), flush=True)
    for case in a.live:
        print(live(*case.rsplit(":", 1)), flush=True)


if __name__ == "__main__":
    main()
