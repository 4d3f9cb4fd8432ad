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

Start-up (--startup, or --startup-only without the CPU rounds): wall time from starting
real-time Pd (live mode, not -batch) to the first non-silent buffer of [unravel~ MODEL
forward 2048] with its first path and without it (UNRAVEL_FIRSTPATH=0: silent until Python
has imported torch), of [nn~ MODEL forward 2048] and of Pd alone ([osc~]), and where unravel~'s
goes, step by step in a fresh Python (importing unravel.archive and torch, the rest of the
bridge, reading the file, each method's first three calls); medians of --rounds.

Usage: .venv/bin/python bench/pd_render.py [--model PATH] [--nn DIR] [--seconds 10 60] [--rounds 3] [--pin 0]
       [--startup | --startup-only] [--lib DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import BUILD, Patch, pd_command  # noqa: E402

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


def variants(model: pathlib.Path, nn_dir: pathlib.Path | None, d: pathlib.Path,
             lib: pathlib.Path = BUILD) -> dict:
    """name -> function(seconds) -> the command rendering that many seconds."""
    pd = lambda obj, extra=(): (lambda s: pd_command(render_patch(d, obj, s), ["-r", str(SR), *extra],
                                                     path=lib))
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


# Where the start-up goes, step by step in a fresh Python (argv: model): what [unravel~]'s
# first object does before its first block (prints one JSON line of (step, seconds)).
PARTS = """
import json, sys, time
t = time.perf_counter()
out = []
def step(name):
    global t
    now = time.perf_counter(); out.append((name, now - t)); t = now
import unravel.archive; step("import unravel.archive (Pd's thread)")
import torch; step("import torch")
from unravel import bridge; step("import unravel.bridge, the rest")
bridge.init(); step("bridge.init (gc.freeze)")
from unravel import modelcache
from unravel.methods import discover_methods
p = unravel.archive.resolve_model(sys.argv[1])
module = modelcache.read_module(p, torch.device("cpu")); step("read the model file")
methods = discover_methods(module, p.name)
try:                        # as Model loads it (a checkout before unravel.caches: its way)
    from unravel import caches
    graphs = caches.inlined(module._c)
    if modelcache.written(module._c, methods, graphs):
        caches.batched(module._c, graphs)
except ImportError:
    modelcache.written(module._c, methods)
step("its methods' graphs: what they write, the caches")
ratio = (methods.get("encode") or methods.get("decode")).in_ratio if "encode" not in methods else methods["encode"].out_ratio
with torch.inference_mode():
    for m, mp in methods.items():
        x = torch.zeros(1, mp.in_channels, mp.step(ratio))
        for k in ("first", "second", "third"):
            module._c._get_method(m)(x); step(f"{m}: {k} call")
print(json.dumps(out))
"""


def first_patch(d: pathlib.Path, obj: str, name: str) -> pathlib.Path:
    """[noise~] -> OBJ -> [env~]: prints "first: bang" and quits at the first non-silent
    envelope (1024 samples) of OBJ's output."""
    p = Patch()
    lb = p.obj("loadbang")
    u = p.obj(obj)
    noise = p.obj("noise~")
    p.connect(noise, 0, u, 0)
    on = p.msg("; pd dsp 1")
    p.connect(lb, 0, on, 0)
    _, t = p.first_sound(u)  # the first nonzero envelope = the first model buffer came out
    pr = p.obj("print first")
    p.connect(t, 0, pr, 0)
    q = p.msg("; pd quit")
    p.connect(t, 0, q, 0)
    return p.write(d / f"{name}.pd")


def first_buffer(patch: pathlib.Path, extra: list[str], lib: pathlib.Path = BUILD,
                 setenv: dict[str, str] | None = None) -> float:
    """Wall seconds from starting real-time Pd (not -batch: live mode) on `patch` until it
    prints "first:" (nan if it never does); `setenv`: variables for Pd's environment."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | (setenv or {})
    t0 = time.perf_counter()
    proc = subprocess.Popen(pd_command(patch, ["-r", str(SR), *extra], batch=False, path=lib),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    first = float("nan")
    try:
        for line in proc.stderr:
            if line.startswith("first:") and first != first:
                first = time.perf_counter() - t0
        proc.wait(timeout=60)
    finally:
        proc.kill()
    return first


def startup(d: pathlib.Path, model: pathlib.Path, nn_dir: pathlib.Path | None, rounds: int,
            lib: pathlib.Path = BUILD) -> None:
    """Prints Pd's start to the first non-silent buffer in real time (live mode) of
    [unravel~ MODEL forward 2048] with and without its first path (native/firstpath.h), of
    [nn~ MODEL forward 2048] (with `nn_dir`) and of Pd alone ([osc~] instead of a model),
    and the steps of unravel~'s start in a fresh Python (PARTS); medians of `rounds`
    interleaved runs."""
    first_unravel = first_patch(d, f"unravel~ {model} forward {B}", "first_unravel")
    runs = {"Pd alone ([osc~ 440])": (first_patch(d, "osc~ 440", "alone"), [], None),
            "unravel~": (first_unravel, [], None),
            "unravel~, no first path (UNRAVEL_FIRSTPATH=0)": (first_unravel, [],
                                                               {"UNRAVEL_FIRSTPATH": "0"})}
    if nn_dir is not None:
        runs["nn~"] = (first_patch(d, f"nn~ {model} forward {B}", "first_nn"),
                       ["-path", str(nn_dir)], None)
    firsts: dict[str, list[float]] = {k: [] for k in runs}
    parts: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, (patch, extra, setenv) in runs.items():
            firsts[name].append(first_buffer(patch, extra, lib, setenv))
        out = subprocess.run([sys.executable, "-c", PARTS, str(model)], check=True,
                             capture_output=True, text=True).stdout
        for step, s in json.loads(out.splitlines()[-1]):
            parts.setdefault(step, []).append(s)
    print(f"start-up, real-time Pd (live mode), medians of {rounds}; load average {loadavg()}:")
    for name, v in firsts.items():
        print(f"  {name}: Pd start -> first non-silent buffer {statistics.median(v):.2f} s "
              f"({', '.join(f'{x:.2f}' for x in v)})")
    print("  unravel~'s steps in a fresh Python (ms):")
    for step, v in parts.items():
        print(f"    {step:<40} {statistics.median(v) * 1000:7.1f}")


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
    ap.add_argument("--startup", action="store_true", help="also time Pd's start-up to the first buffer")
    ap.add_argument("--startup-only", action="store_true", help="only time the start-up")
    ap.add_argument("--lib", type=pathlib.Path, default=BUILD,
                    help="the [unravel~] folder (default build/unravel; another checkout's, with "
                         "PYTHONPATH=CHECKOUT/pybackend, measures the code before a change)")
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
        if a.startup_only:
            startup(d, model, a.nn.resolve() if a.nn else None, a.rounds, a.lib)
            return 0
        runs = variants(model, a.nn.resolve() if a.nn else None, d, a.lib)
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
            startup(d, model, a.nn.resolve() if a.nn else None, a.rounds, a.lib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
