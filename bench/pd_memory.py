"""Memory and creation time of N `[unravel~ -m MODEL decode]` objects in one `pd -batch`,
against N `[nn~ MODEL decode]` (with --nn DIR); with --live also N `[unravel~ MODEL forward
2048]` in real time (`pd -nogui -noaudio`, quitting 3 s after every object loaded), private
and with -p (voices: the group's one model thread and batched call), whose resident memory
is also read while they play (VmRSS 2 s after every object loaded: "steady").

For each N (default 1 and 8) a patch with N objects is opened in a fresh `pd -batch` that
turns DSP on, runs 1 s of audio (every object decodes a few buffers of zeros: nn~ compiles
its model at its first call, unravel~ at load) and quits; reported per external: Pd's peak
resident memory (ru_maxrss), the wall time of the process, and what each object after the
first adds: (peak(N) - peak(1)) / (N - 1), and the same for the time (creation of the
objects, loading the model, the first calls; the first object also pays for starting
Python/torch). Every process runs on one CPU (nn~ 1.6 built here crashes with
OMP_NUM_THREADS=1). The runs are interleaved and repeated; medians.

Usage: .venv/bin/python bench/pd_memory.py [--model PATH] [--nn DIR] [--counts 1 8] [--rounds 3] [--live]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import Patch, pd_command, proc_stats  # noqa: E402

from unravel.model import resolve_model  # noqa: E402


def patch(d: pathlib.Path, obj: str, n: int, live: bool = False) -> pathlib.Path:
    """N copies of `obj`, DSP on for 1 s of logical time, then quit; `live` (real time: the
    objects load in the background): noise~ into each, "steady: bang" 2 s and quit 3 s after
    every object replied `loaded`."""
    p = Patch()
    lb = p.obj("loadbang")
    on = p.msg("; pd dsp 1")
    p.connect(lb, 0, on, 0)
    dl = p.obj("delay 3000" if live else "delay 1000")
    q = p.msg("; pd quit")
    p.connect(dl, 0, q, 0)
    if not live:
        for _ in range(n):
            p.obj(obj)
        p.connect(lb, 0, dl, 0)
        return p.write(d / f"{obj.split()[0].rstrip('~')}{n}.pd")
    count, sel = p.count(n)
    p.connect(sel, 0, dl, 0)
    p.connect(sel, 0, p.obj("delay 2000"), 0)
    p.connect(p.n - 1, 0, p.obj("print steady"), 0)
    for _ in range(n):
        u = p.obj(obj)
        p.connect(p.obj("noise~"), 0, u, 0)
        p.connect(u, 1, p.obj("route loaded"), 0)
        p.connect(p.n - 1, 0, p.obj("t b"), 0)
        p.connect(p.n - 1, 0, count, 0)
    return p.write(d / f"live{n}.pd")


def run(cmd: list[str]) -> tuple[float, float, float]:
    """(peak RSS in MB, wall seconds, RSS in MB at "steady: bang" or NaN) of one pd process;
    fails loudly on errors."""
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    lines, steady = [], float("nan")
    for line in p.stderr:
        lines.append(line)
        if line.startswith("steady: bang"):
            steady = proc_stats(p.pid)[0]
    err = "".join(lines)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    # (eight live objects loading at once on one CPU take over 3 s: the watch says so)
    bad = [ln for ln in err.splitlines() if (ln.lower().startswith("error") and "has not answered" not in ln)
           or "couldn't create" in ln]
    if os.waitstatus_to_exitcode(status) != 0 or bad:
        raise SystemExit(f"pd failed: {(bad or [err[-2000:]])[0]}")
    return ru.ru_maxrss / 1024, wall, steady


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--nn", type=pathlib.Path, help="folder with an nn~ build (nn~.pd_linux)")
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--live", action="store_true",
                    help="also `[unravel~ MODEL forward 2048]` in real time, private and with -p "
                         "(one model thread and one batched call per block for the group)")
    a = ap.parse_args()
    model = resolve_model(a.model)
    size = model.stat().st_size / 1e6
    m = torch.jit.load(str(model), map_location="cpu")
    weights = sum(p.numel() * p.element_size() for p in m.parameters()) / 1e6
    externals = {"unravel~": (f"unravel~ -m {model} decode", [], False)}
    if a.live:
        externals["unravel~ live"] = (f"unravel~ {model} forward 2048", [], True)
        externals["unravel~ -p live"] = (f"unravel~ -p {model} forward 2048", [], True)
    if a.nn:
        externals["nn~"] = (f"nn~ {model} decode", ["-path", str(a.nn.resolve())], False)
    print(f"model {model} ({size:.1f} MB file, {weights:.2f} MB of weights); load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        res: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for _ in range(a.rounds):
            for name, (obj, extra, live) in externals.items():
                for n in a.counts:
                    cmd = pd_command(patch(d, obj, n, live), extra, batch=not live)
                    res.setdefault((name, n), []).append(run(cmd))
        lo, hi = min(a.counts), max(a.counts)
        for name, (_, _, live) in externals.items():
            med = {n: [statistics.median(r[i] for r in res[(name, n)]) for i in range(3)] for n in a.counts}
            line = "; ".join(f"{n} objects: peak {med[n][0]:.1f} MB" + (f", steady {med[n][2]:.1f} MB" if live else "")
                             + f", {med[n][1]:.2f} s" for n in a.counts)
            print(f"{name:<16} {line}")
            if hi > lo:
                per = lambda i: (med[hi][i] - med[lo][i]) / (hi - lo)
                share = lambda mb: f"{mb:.1f} MB ({mb / size * 100:.0f} % of the model file, {mb / weights * 100:.0f} % of its weights)"
                print(f"{'':<16} each extra object: peak {share(per(0))}"
                      + (f", steady {share(per(2))}" if live else "") + f", {per(1) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
