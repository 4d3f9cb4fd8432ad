"""Soak [unravel~] in Pd (issue 15): the fuzz of tests/test_pd_fuzz.py at length, quits during
DSP and jobs, and create/free cycles with RSS measured. Not part of `make test`.

1. Messages: `--seeds` fuzz runs of `--messages` seeded random messages each (hostile model
   files, a 64 kB tmpfs as a full disk where one can be mounted); per run: crashes (exit
   status not 0 or a signal), hangs (no exit within the timeout), our error lines not in
   the one-line form, temporary files left, existing files changed.
2. Quits: `--quits` runs of `pd quit` during DSP (live and sync workers) while an encode job
   is inside torch; counts exits that are not 0, hangs (no exit in 60 s: every thread's
   stack is saved with gdb), and Python noise (tracebacks, `Exception ignored`,
   KeyboardInterrupt).
3. Create/free: `--cycles` cycles of creating an [unravel~] during DSP, starting a long job on
   it and freeing it (Pd in real time, no -batch); Pd's RSS and thread count after the first
   `--warm` cycles and after the last one, growth per cycle.

Usage: .venv/bin/python bench/soak.py [--seeds 20] [--messages 5000] [--quits 50] [--cycles 200]
"""

from __future__ import annotations

import argparse
import pathlib
import random
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import Patch, cycles_patch, pd_command, run_marked  # noqa: E402
import test_pd_fuzz as fuzz  # noqa: E402


def soak_messages(seeds: list[int], n: int) -> dict:
    tot = {"runs": 0, "messages": 0, "crashes": 0, "hangs": 0, "bad_lines": 0, "error_lines": 0,
           "temp_files": 0, "changed_files": 0, "seconds": 0.0}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as d:
            run = fuzz.run_fuzz(pathlib.Path(d), seed, n, timeout=600)
            r = run.result
            bad, temps, changed = fuzz.bad_error_lines(run), fuzz.temp_files_left(run), fuzz.files_changed(run)
            tot["runs"] += 1
            tot["messages"] += run.n
            tot["hangs"] += r.returncode == -999
            tot["crashes"] += r.returncode not in (0, -999) or "mark: end" not in r.lines
            tot["bad_lines"] += len(bad)
            tot["error_lines"] += len(r.errors)
            tot["temp_files"] += len(temps)
            tot["changed_files"] += len(changed)
            tot["seconds"] += r.seconds
            print(f"seed {seed}: {run.n} messages, exit {r.returncode}, {len(r.errors)} error lines, "
                  f"bad {len(bad)} {bad[:2]}, temp files {temps[:2]}, changed {changed[:2]}, "
                  f"{r.seconds:.1f} s, full disk: {run.tmpfs or 'tmpfs'}", flush=True)
    return tot


def quit_patch(d: pathlib.Path, delay: int) -> pathlib.Path:
    p = Patch()
    lb = p.obj("loadbang")
    noise = p.obj("noise~")
    for text in ("unravel~ -live default forward 2048", "unravel~ default forward 4096",
                 "unravel~ -live default encode 2048"):
        u = p.obj(text)
        p.connect(noise, 0, u, 0)
        if "encode" in text:
            job = p.msg("encode input long.wav output lat force 1")
            p.connect(lb, 0, job, 0)
            p.connect(job, 0, u, 0)
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    dl = p.obj(f"delay {delay}")
    p.connect(lb, 0, dl, 0)
    p.connect(dl, 0, p.msg("; pd quit"), 0)
    return p.write(d / "quit.pd")


def soak_quits(count: int) -> dict:
    tot = {"runs": 0, "bad_exits": 0, "hangs": 0, "python_noise": 0, "max_seconds": 0.0}
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        sf.write(d / "long.wav", np.random.default_rng(1).standard_normal(44100 * 60).astype(np.float32) * 0.1,
                 44100, subtype="FLOAT")
        for i in range(count):
            patch = quit_patch(d, rng.choice([50, 150, 300, 600, 1000]))
            t0 = time.monotonic()
            proc = subprocess.Popen(pd_command(patch), cwd=d, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            try:
                out, _ = proc.communicate(timeout=60)
                rc = proc.returncode
            except subprocess.TimeoutExpired:     # a hang: keep every thread's stack
                rc = -999
                trace = pathlib.Path(tempfile.gettempdir()) / f"soak-quit-hang-{i}.txt"
                with open(trace, "w") as f:
                    subprocess.run(["gdb", "-batch", "-ex", "thread apply all bt 30", "-p", str(proc.pid)],
                                   stdout=f, stderr=subprocess.STDOUT, check=False)
                proc.kill()
                out, _ = proc.communicate()
                print(f"quit {i}: hang, stacks in {trace}", flush=True)
            lines = out.splitlines()
            noise = [ln for ln in lines if fuzz.PYTHONISMS.search(ln)]
            tot["runs"] += 1
            tot["hangs"] += rc == -999
            tot["bad_exits"] += rc not in (0, -999)
            tot["python_noise"] += bool(noise)
            tot["max_seconds"] = max(tot["max_seconds"], round(time.monotonic() - t0, 1))
            if rc != 0 or noise:
                print(f"quit {i}: exit {rc} {noise[:2]} {lines[-3:]}", flush=True)
    return tot


def soak_cycles(cycles: int, warm: int) -> dict:
    """Create [unravel~ default forward 2048] during DSP, start a long generate job on it, free
    it 150 ms later; RSS after `warm` cycles and after all of them."""
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        np.save(d / "z.npy", np.random.default_rng(0).standard_normal((1, 8, 40)).astype(np.float32))
        patch = cycles_patch(d / "cycles.pd",
                             "; pd-sub obj 10 10 unravel~ default forward 2048; pd-sub obj 10 50 noise~;"
                             "pd-sub connect 1 0 0 0; pd-sub obj 10 90 r job; pd-sub connect 2 0 0 0;"
                             "job generate input z.npy output gen files 10000 points 11",
                             cycles, 150, dsp=True, warm=warm)
        rc, seen, lines = run_marked(pd_command(patch, batch=False), d)
        gen = list((d / "gen").iterdir()) if (d / "gen").exists() else []
        temps = [f.name for f in gen if ".tmp" in f.name]
    (w_rss, w_thr), (c_rss, c_thr) = seen.get("warm", (0, 0)), seen.get("check", (0, 0))
    return {"cycles": cycles, "exit": rc, "rss_warm_mb": round(w_rss, 1), "rss_end_mb": round(c_rss, 1),
            "rss_growth_per_cycle_kb": round((c_rss - w_rss) * 1024 / max(1, cycles - warm), 1),
            "threads_warm": w_thr, "threads_end": c_thr, "files_from_cancelled_jobs": len(gen),
            "temp_files": len(temps),
            "errors": [ln for ln in lines if ln.startswith("error")][:5]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--messages", type=int, default=5000, help="messages per seed")
    ap.add_argument("--quits", type=int, default=50)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--warm", type=int, default=20, help="cycles before the first RSS reading")
    ap.add_argument("--first-seed", type=int, default=1)
    a = ap.parse_args()
    t = time.time()
    if a.seeds:
        m = soak_messages(list(range(a.first_seed, a.first_seed + a.seeds)), a.messages)
        print("messages:", m, flush=True)
    if a.quits:
        print("quits:", soak_quits(a.quits), flush=True)
    if a.cycles:
        print("create/free:", soak_cycles(a.cycles, min(a.warm, a.cycles - 1)), flush=True)
    print(f"total {time.time() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
