"""[unravel~] in `pd -batch`: steady-state CPU per audio second and start-up time.

CPU: render 60 s and 240 s of noise through [unravel~ default forward 2048] (one torch thread);
the difference of the two runs' process CPU divided by 180 s is the steady-state cost per
audio second. Baseline, in this process: the backend's Model.run('forward', block) on the same
2048-sample blocks for the same durations. Prints the ratio (goal <= 1.05).

Start-up: wall time from starting Pd to the first model buffer coming out (a patch that
prints when logical time passes the first buffer plus latency). Baseline: a fresh
`python -c 'import torch; load_model(default)'` process. Goal < 2 s.

On a shared 2-core machine the difference of two process CPU times varies by +-15 % or more
with the other processes' load; compare figures from the same run, and repeat.

Usage: .venv/bin/python bench/pd_render.py [--short] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import Patch, pd_command  # noqa: E402

from unravel.model import load_model, set_threads  # noqa: E402

SR = 44100
B = 2048


def pd_cmd(patch: pathlib.Path) -> list[str]:
    return pd_command(patch, ["-r", str(SR)])


def render_patch(d: pathlib.Path, seconds: float) -> pathlib.Path:
    p = Patch()
    lb = p.obj("loadbang")
    noise = p.obj("noise~")
    u = p.obj(f"unravel~ default forward {B}")
    dac = p.obj("dac~")
    p.connect(noise, 0, u, 0)
    p.connect(u, 0, dac, 0)
    on = p.msg("; pd dsp 1")
    p.connect(lb, 0, on, 0)
    dl = p.obj(f"delay {seconds * 1000:.0f}")
    p.connect(lb, 0, dl, 0)
    st = p.obj("t b b")
    p.connect(dl, 0, st, 0)
    p.connect(st, 1, u, 0)
    pr = p.obj("print status")
    p.connect(u, 1, pr, 0)
    q = p.msg("; pd quit")
    p.connect(st, 0, q, 0)
    return p.write(d / f"render{seconds:g}.pd")


def child_cpu(cmd: list[str]) -> tuple[float, float, str]:
    """(CPU seconds user+sys, wall seconds, stderr) of one child process."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"pd failed ({p.returncode}): {err[-2000:]}")
    return ru.ru_utime + ru.ru_stime, time.perf_counter() - t0, err


def python_cpu(model, seconds: float, flush_denormal: bool = False) -> float:
    """CPU seconds of model.run('forward') on seconds of noise in 2048-sample blocks."""
    torch.set_flush_denormal(flush_denormal)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1, 1, (1, 1, int(seconds * SR) // B * B)).astype(np.float32))
    t0 = time.process_time()
    for k in range(x.shape[-1] // B):
        model.run("forward", x[..., k * B:(k + 1) * B])
    t = time.process_time() - t0
    torch.set_flush_denormal(False)
    return t


def startup(d: pathlib.Path) -> tuple[float, float]:
    """Wall seconds from starting Pd until 'first: bang' (first buffer out), and of the
    baseline python process that imports torch and loads the model."""
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj(f"unravel~ default forward {B}")
    noise = p.obj("noise~")
    p.connect(noise, 0, u, 0)
    env = p.obj("env~ 1024 1024")
    p.connect(u, 0, env, 0)
    on = p.msg("; pd dsp 1")
    p.connect(lb, 0, on, 0)
    # the first nonzero envelope = the first model buffer reached the output
    moses = p.obj("moses 1")
    p.connect(env, 0, moses, 0)
    once = p.obj("spigot 1")
    p.connect(moses, 1, once, 0)
    t = p.obj("t b b")
    p.connect(once, 0, t, 0)
    off = p.msg("0")
    p.connect(t, 1, off, 0)
    p.connect(off, 0, once, 1)
    pr = p.obj("print first")
    p.connect(t, 0, pr, 0)
    q = p.msg("; pd quit")
    p.connect(t, 0, q, 0)
    patch = p.write(d / "startup.pd")
    t0 = time.perf_counter()
    proc = subprocess.Popen(pd_cmd(patch), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    first = None
    for line in proc.stderr:
        if line.startswith("first:"):
            first = time.perf_counter() - t0
    proc.wait()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch; from unravel.model import load_model; "
                    "torch.set_num_threads(1); load_model('default')"], check=True)
    base = time.perf_counter() - t0
    return first or float("nan"), base


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="15 s and 60 s instead of 60 s and 240 s")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (minimum kept)")
    a = ap.parse_args()
    s1, s2 = (15.0, 60.0) if a.short else (60.0, 240.0)
    set_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        model = load_model("default")
        # the machine is shared: interleave the runs, repeat, keep each one's minimum
        runs: dict[str, list[float]] = {k: [] for k in ("pd1", "pd2", "py1", "py2", "ftz1", "ftz2")}
        for _ in range(a.repeat):
            runs["pd1"].append(child_cpu(pd_cmd(render_patch(d, s1)))[0])
            cpu2, wall2, err2 = child_cpu(pd_cmd(render_patch(d, s2)))
            runs["pd2"].append(cpu2)
            runs["py1"].append(python_cpu(model, s1))
            runs["py2"].append(python_cpu(model, s2))
            runs["ftz1"].append(python_cpu(model, s1, True))
            runs["ftz2"].append(python_cpu(model, s2, True))
        m = {k: min(v) for k, v in runs.items()}
        status = [ln for ln in err2.splitlines() if ln.startswith("status:")]
        per = lambda a_, b_: (m[b_] - m[a_]) / (s2 - s1) * 1000
        pd_ms, py_ms, ftz_ms = per("pd1", "pd2"), per("py1", "py2"), per("ftz1", "ftz2")
        print(f"render {s1:g} s: Pd {m['pd1']:.2f} s CPU; {s2:g} s: Pd {m['pd2']:.2f} s CPU "
              f"(min of {a.repeat}, wall of the last {wall2:.2f} s)")
        print(f"  Pd status: {' | '.join(ln[8:] for ln in status if any(k in ln for k in ('mode', 'latency', 'underruns')))}")
        print(f"steady state per audio second: Pd {pd_ms:.2f} ms CPU; plain Python Model.run {py_ms:.2f} ms; "
              f"with denormals flushed (as Pd's threads run) {ftz_ms:.2f} ms")
        print(f"ratio Pd / Python: {pd_ms / py_ms:.3f}; Pd / Python with flushed denormals: {pd_ms / ftz_ms:.3f}"
              f"  (goal <= 1.05)")
        first, base = startup(d)
        print(f"start-up: Pd start -> first buffer out {first:.2f} s; python import torch + load model {base:.2f} s; "
              f"ratio {first / base:.2f}  (goal < 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
