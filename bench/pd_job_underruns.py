"""Underruns of a live [unravel~] while a job runs on its own model (issue 20, item 3).

Real-time Pd (`pd -nogui -noaudio`, no -batch: live mode) plays noise into
`[unravel~ MODEL forward 2048]`; this script drives it through [netreceive] and, per round:
an idle window of `--idle` seconds, then a `decode` job of a `--seconds` s latent file on the
same object, then an idle window as long as the job took. For each window it prints the
underruns (from the `bang` status reply) and the largest gap between two DSP ticks
([bang~] into [realtime]). `--outside`: the same job runs as a process started by this
script instead (`python -m unravel.jobproc`, as [unravel~] starts it), for comparison: what
the machine's CPUs allow.

Usage: .venv/bin/python bench/pd_job_underruns.py [--model default] [--seconds 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import Patch, pd_command  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_patch(path: pathlib.Path, model: str, port: int) -> pathlib.Path:
    """noise~ -> [unravel~ model forward 2048]; [netreceive port] routes `u ...` to it and
    `gap` to the largest DSP gap since the last `gap` (printed as `gap: ms`)."""
    p = Patch()
    lb = p.obj("loadbang")
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    noise = p.obj("noise~")
    u = p.obj(f"unravel~ {model} forward 2048")
    p.connect(noise, 0, u, 0)
    p.connect(u, 1, p.obj("print info"), 0)
    net = p.obj(f"netreceive {port}")
    rt = p.obj("route u gap")
    p.connect(net, 0, rt, 0)
    p.connect(rt, 0, u, 0)
    # largest gap between DSP ticks: [bang~] -> [t b b] -> [realtime] -> [max]
    tick = p.obj("bang~")
    tb = p.obj("t b b")
    p.connect(tick, 0, tb, 0)
    clock = p.obj("realtime")
    p.connect(tb, 1, clock, 1)
    p.connect(tb, 0, clock, 0)
    mx = p.obj("max")
    p.connect(clock, 0, mx, 0)
    p.connect(mx, 0, mx, 1)
    read = p.obj("t b b")
    p.connect(rt, 1, read, 0)
    f = p.obj("f")
    p.connect(mx, 0, f, 1)
    p.connect(read, 1, f, 0)
    p.connect(f, 0, p.obj("print gap"), 0)
    zero = p.msg("0")
    p.connect(read, 0, zero, 0)
    p.connect(zero, 0, mx, 1)
    p.connect(zero, 0, f, 1)
    return p.write(path)


class Pd:
    """A real-time Pd on the patch; `send()` messages, `wait_for()` its console lines."""

    def __init__(self, patch: pathlib.Path, port: int):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(pd_command(patch, batch=False), cwd=patch.parent, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        for _ in range(200):
            try:
                self.sock = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("Pd did not open its port")

    def _read(self) -> None:
        for ln in self.proc.stderr:
            self.lines.put(ln.rstrip())

    def send(self, msg: str) -> None:
        self.sock.sendall((msg + ";\n").encode())

    def wait_for(self, prefix: str, timeout: float = 120.0) -> str:
        end = time.monotonic() + timeout
        while True:
            ln = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            if ln.startswith(prefix):
                return ln[len(prefix):].strip()
            if ln.startswith("error"):
                print("  pd:", ln)

    def status(self) -> tuple[int, float]:
        """(underruns so far, largest DSP gap in ms since the last call)."""
        self.send("u bang")
        n = int(self.wait_for("info: underruns"))
        self.send("gap")
        return n, float(self.wait_for("gap:"))

    def quit(self) -> None:
        self.sock.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def outside_job(d: pathlib.Path, model: str) -> str:
    """The decode job as its own process, started here: 'done' or 'error'."""
    from unravel.model import resolve_model
    job = {"job": "decode", "args": ["input", "z.npy", "output", "dec", "force", 1.0],
           "patch_dir": str(d), "model": {"path": str(resolve_model(model)), "device": "cpu",
                                          "sr": 44100, "module": None}}
    p = subprocess.run([sys.executable, "-m", "unravel.jobproc"], input=json.dumps(job) + "\n",
                       capture_output=True, text=True)
    return "done" if '"result"' in p.stdout else "error"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the decoded latent file")
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--outside", action="store_true", help="run the job outside Pd")
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        frames = int(a.seconds * 44100 / 2048)
        np.save(d / "z.npy", np.random.default_rng(0).standard_normal((8, frames)).astype(np.float32))
        port = free_port()
        pd = Pd(live_patch(d / "live.pd", a.model, port), port)
        try:
            pd.send("u bang")
            pd.wait_for("info: underruns")        # the model is loaded and playing
            time.sleep(2)
            pd.status()
            for r in range(a.rounds):
                u0, _ = pd.status()
                time.sleep(a.idle)
                u1, gap_idle = pd.status()
                t0 = time.monotonic()
                if a.outside:
                    done = outside_job(d, a.model)
                else:
                    pd.send("u decode input z.npy output dec force 1")
                    done = pd.wait_for("info:", 300)
                    while not done.startswith(("done", "error")):
                        done = pd.wait_for("info:", 300)
                job_s = time.monotonic() - t0
                u2, gap_job = pd.status()
                time.sleep(job_s)
                u3, gap_after = pd.status()
                print(f"round {r}: idle {a.idle:.0f} s: {u1 - u0} underruns, gap {gap_idle:.0f} ms | "
                      f"decode {a.seconds:.0f} s latents ({done.split()[0]}) took {job_s:.1f} s: "
                      f"{u2 - u1} underruns, gap {gap_job:.0f} ms | idle after: {u3 - u2} underruns, "
                      f"gap {gap_after:.0f} ms", flush=True)
        finally:
            pd.quit()
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
