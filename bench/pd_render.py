"""[unravel~] in `pd -batch` against the floor and against IRCAM's [nn~]: steady-state CPU.

Every variant renders noise through a model's `forward` in 2048-sample blocks with one torch
thread, in its own process, and prints a mark when S1 and when S2 seconds of audio went
through; the steady-state cost per audio second is the process's CPU time (every thread,
read from /proc when each mark arrives) between the marks over S2 - S1, so start-up
(importing torch, loading the model) and quitting stay outside. By default every process
runs on one CPU (--pin), so torch's OpenMP pool has one thread in every variant. Variants:

- floor: the same TorchScript `forward` called on the same blocks in a plain Python loop
  (torch.jit.load, inference mode, nothing else);
- floor-ftz: the floor with denormals flushed to zero (as unravel's model thread runs);
- unravel~: `[noise~] -> [unravel~ MODEL forward 2048] -> [dac~]` in `pd -batch`;
- nn~ (with --nn DIR, a folder holding nn~.pd_linux): `[nn~ MODEL forward 2048]` the same way.

The machine is shared: the variants run interleaved, one round after another, and the
figures are the medians over the rounds of each round's ratios (unravel~/floor,
unravel~/nn~). The load average is printed before and after.

Start-up (default model only, --startup): wall time from starting Pd to the first model
buffer coming out, against a fresh `python -c 'import torch; load_model(...)'`.

Usage: .venv/bin/python bench/pd_render.py [--model PATH] [--nn DIR] [--seconds 10 60] [--rounds 3] [--pin 0]
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

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import Patch, pd_command  # noqa: E402

from unravel.model import resolve_model  # noqa: E402

SR = 44100
B = 2048

# The floor: a plain Python loop over the TorchScript forward (argv: model, seconds, ftz).
# The floor: a plain Python loop over the TorchScript forward (argv: model, mark seconds...,
# ftz); prints "mark: S" on stderr when S seconds of audio were processed.
FLOOR = """
import sys, numpy as np, torch
torch.set_num_threads(1)
torch.set_flush_denormal(sys.argv[-1] == "1")
m = torch.jit.load(sys.argv[1], map_location="cpu").eval()
marks = [float(s) for s in sys.argv[2:-1]]
n = int(marks[-1] * 44100) // 2048 * 2048 + 2048
x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 1, n)).astype(np.float32))
with torch.inference_mode():
    for k in range(n // 2048):
        m.forward(x[..., k * 2048:(k + 1) * 2048])
        while marks and (k + 1) * 2048 >= marks[0] * 44100:
            print(f"mark: {marks.pop(0):g}", file=sys.stderr, flush=True)
"""


def render_patch(d: pathlib.Path, obj: str, marks: tuple[float, float]) -> pathlib.Path:
    """noise~ -> OBJ -> dac~; prints "mark: S" at each of the logical times `marks`, then quits."""
    p = Patch()
    lb = p.obj("loadbang")
    noise = p.obj("noise~")
    u = p.obj(obj)
    dac = p.obj("dac~")
    p.connect(noise, 0, u, 0)
    p.connect(u, 0, dac, 0)
    on = p.msg("; pd dsp 1")
    p.connect(lb, 0, on, 0)
    for s in marks:
        dl = p.obj(f"delay {s * 1000:.0f}")
        p.connect(lb, 0, dl, 0)
        pr = p.msg(f"; pd-mark {s:g}")
        p.connect(dl, 0, pr, 0)
    recv = p.obj("receive pd-mark")
    out = p.obj("print mark")
    p.connect(recv, 0, out, 0)
    last = p.obj(f"delay {marks[-1] * 1000 + 1:.0f}")
    p.connect(lb, 0, last, 0)
    q = p.msg("; pd quit")
    p.connect(last, 0, q, 0)
    name = obj.split()[0].rstrip("~")
    return p.write(d / f"{name}.pd")


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system, every thread) the process has used so far."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def window_cpu(cmd: list[str], pin: int | None, tries: int = 3) -> float:
    """CPU seconds the process used between its two "mark:" lines on stderr (the steady
    state: start-up and quitting are outside); fails loudly on errors.
    `pin`: the one CPU the process and all its threads run on (then torch's OpenMP pool has
    one thread everywhere, nn~'s too, without OMP_NUM_THREADS=1, with which nn~ 1.6 built
    here crashes in a model call); None: OMP_NUM_THREADS=1, any CPU.
    nn~ 1.6 built here now and then fails one model call at the start of DSP (a TorchScript
    error, about one run in four): such an nn~ run is repeated, up to `tries` runs."""
    env = dict(os.environ)
    if pin is None:
        env["OMP_NUM_THREADS"] = "1"
    else:
        env.pop("OMP_NUM_THREADS", None)
    is_nn = pathlib.Path(cmd[-1]).name == "nn.pd"      # render_patch names it after the object
    for attempt in range(tries):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                             preexec_fn=None if pin is None else (lambda: os.sched_setaffinity(0, {pin})))
        cpu, lines = [], []
        for ln in p.stderr:
            if ln.startswith("mark:"):
                cpu.append(_cpu_of(p.pid))
            lines.append(ln)
        rc = p.wait()
        bad = [ln for ln in lines if ln.lower().startswith("error") or "couldn't create" in ln]
        if rc == 0 and not bad and len(cpu) == 2:
            return cpu[1] - cpu[0]
        if not (is_nn and rc == 0 and bad and attempt + 1 < tries):
            raise SystemExit(f"{cmd[0]} failed ({rc}, {len(cpu)} marks): "
                             f"{(bad or [''.join(lines)[-2000:]])[0]}")
    raise AssertionError("unreachable")


def variants(model: pathlib.Path, nn_dir: pathlib.Path | None, d: pathlib.Path) -> dict:
    """name -> function(seconds) -> the command rendering that many seconds."""
    pd = lambda obj, extra=(): (lambda s: pd_command(render_patch(d, obj, s), ["-r", str(SR), *extra]))
    v = {
        "floor": lambda s: [sys.executable, "-c", FLOOR, str(model), *map(str, s), "0"],
        "floor-ftz": lambda s: [sys.executable, "-c", FLOOR, str(model), *map(str, s), "1"],
        "unravel~": pd(f"unravel~ {model} forward {B}"),
    }
    if nn_dir is not None:
        v["nn~"] = pd(f"nn~ {model} forward {B}", ("-path", str(nn_dir)))
    return v


def loadavg() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def startup(d: pathlib.Path) -> tuple[float, float]:
    """Wall seconds from starting Pd until the first buffer of [unravel~ default] comes out,
    and of a python process that imports torch and loads the model."""
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj(f"unravel~ default forward {B}")
    noise = p.obj("noise~")
    p.connect(noise, 0, u, 0)
    env = p.obj("env~ 1024 1024")
    p.connect(u, 0, env, 0)
    on = p.msg("; pd dsp 1")
    p.connect(lb, 0, on, 0)
    moses = p.obj("moses 1")  # the first nonzero envelope = the first model buffer came out
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
    proc = subprocess.Popen(pd_command(patch, ["-r", str(SR)]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    first = None
    for line in proc.stderr:
        if line.startswith("first:"):
            first = time.perf_counter() - t0
    proc.wait()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch; from unravel.model import load_model; "
                    "torch.set_num_threads(1); load_model('default')"], check=True)
    return first or float("nan"), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="a TorchScript model with forward (default: the bundled one)")
    ap.add_argument("--nn", type=pathlib.Path, help="folder with an nn~ build (nn~.pd_linux) to compare with")
    ap.add_argument("--seconds", type=float, nargs=2, default=(10.0, 60.0), metavar=("SHORT", "LONG"),
                    help="the two marks: the CPU time between them is measured (default 10 60)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    ap.add_argument("--pin", type=int, default=0, metavar="CPU",
                    help="run every variant on this one CPU (default 0; -1: any CPU with "
                         "OMP_NUM_THREADS=1, which nn~ 1.6 does not survive)")
    ap.add_argument("--startup", action="store_true", help="also time Pd's start-up (default model)")
    a = ap.parse_args()
    model = resolve_model(a.model)
    pin = None if a.pin < 0 else a.pin
    if pin is None and a.nn:
        ap.error("--nn needs --pin CPU (nn~ 1.6 crashes with OMP_NUM_THREADS=1)")
    s1, s2 = a.seconds
    print(f"model {model}, {B}-sample blocks, CPU from {s1:g} s to {s2:g} s of audio, {a.rounds} rounds, "
          f"{'any CPU' if pin is None else f'all on CPU {pin}'}; load average {loadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        runs = variants(model, a.nn.resolve() if a.nn else None, d)
        ms: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(a.rounds):
            for name, cmd in runs.items():
                ms[name].append(window_cpu(cmd((s1, s2)), pin) / (s2 - s1) * 1000)
            print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in ms.items())
                  + f" ms CPU per audio second; load {loadavg()}")
        med = {k: statistics.median(v) for k, v in ms.items()}
        ratio = lambda x, y: statistics.median(a_ / b_ for a_, b_ in zip(ms[x], ms[y]))
        print("median ms CPU per audio second: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
        print(f"unravel~ / floor {ratio('unravel~', 'floor'):.3f} (goal <= 1.05); "
              f"unravel~ / floor-ftz {ratio('unravel~', 'floor-ftz'):.3f}; "
              f"floor-ftz / floor {ratio('floor-ftz', 'floor'):.3f}")
        if "nn~" in ms:
            print(f"unravel~ / nn~ {ratio('unravel~', 'nn~'):.3f} (goal <= 0.85); "
                  f"nn~ / floor {ratio('nn~', 'floor'):.3f}")
        print(f"load average at the end {loadavg()}")
        if a.startup:
            first, base = startup(d)
            print(f"start-up: Pd start -> first buffer out {first:.2f} s; python import torch + load model "
                  f"{base:.2f} s; ratio {first / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
