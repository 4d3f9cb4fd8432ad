"""What a model call costs when calls come at a block's pace, as real-time Pd makes them,
against the same calls back to back (issue 24: the floor of eight voices).

One process on one CPU (--pin) loads the model (torch.jit.load, one thread, inference mode),
warms its `forward` up on BATCH items, then times each call's own CPU time
(time.thread_time around the call alone) over --calls calls of 2048 samples:

- back to back: one call after the other;
- paced, sleeping: each call at its block's time (--gap ms apart; default 46.4 ms, 2048
  samples at 44.1 kHz): the thread sleeps between calls, as a model thread waits for Pd;
- paced, spinning: the same times, but the thread spins (a Python loop reading the clock)
  instead of sleeping: the CPU never idles, so what the pace costs is not the CPU's sleep.

The variants run interleaved, --rounds times; medians of the per-call means, and the ratio of
each paced variant to back to back (medians of each round's ratios).

Usage: .venv/bin/python bench/paced_call.py [--model PATH] [--batch 1 8] [--calls 100]
       [--rounds 3] [--gap 46.4] [--pin 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

ONE = """
import sys, time, numpy as np, torch
torch.set_num_threads(1)
m = torch.jit.load(sys.argv[1]).eval()
b, mode, calls, gap = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]) / 1000
x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (b, 1, 2048 * (calls + 20))).astype(np.float32))
spent = 0.0
with torch.inference_mode():
    for k in range(20):
        m.forward(x[..., k * 2048:(k + 1) * 2048])
    t0 = time.monotonic()
    for k in range(calls):
        due = t0 + k * gap
        if mode == "sleep":
            time.sleep(max(0.0, due - time.monotonic()))
        elif mode == "spin":
            while time.monotonic() < due:
                pass
        c0 = time.thread_time()
        m.forward(x[..., (k + 20) * 2048:(k + 21) * 2048])
        spent += time.thread_time() - c0
print(spent / calls * 1000)
"""

MODES = {"back to back": "none", "paced, sleeping": "sleep", "paced, spinning": "spin"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a TorchScript model with forward (default: the bundled one)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gap", type=float, default=2048 / 44.1, help="ms between paced calls")
    ap.add_argument("--pin", type=int, default=1, metavar="CPU")
    a = ap.parse_args()
    from pd_render import loadavg
    from unravel.model import resolve_model
    model = resolve_model(a.model or "default")
    print(f"model {model.name}, forward on 2048-sample blocks, {a.calls} calls per run, paced "
          f"{a.gap:.1f} ms apart, CPU {a.pin}; load average {loadavg()}")
    for b in a.batch:
        ms: dict[str, list[float]] = {k: [] for k in MODES}
        for _ in range(a.rounds):
            for name, mode in MODES.items():
                out = subprocess.run([sys.executable, "-c", ONE, str(model), str(b), mode, str(a.calls), str(a.gap)],
                                     capture_output=True, text=True, check=True,
                                     preexec_fn=lambda: os.sched_setaffinity(0, {a.pin}))
                ms[name].append(float(out.stdout))
        base = ms["back to back"]
        print(f"batch {b}: " + ", ".join(
            f"{name} {statistics.median(v):.2f} ms per call"
            + ("" if name == "back to back" else f" ({statistics.median(p / q for p, q in zip(v, base)):.2f}x)")
            for name, v in ms.items()))
    print(f"load average at the end {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
