"""Voices (issue 24): what 1 and 8 objects of one model cost in REAL-TIME Pd, private and
sharing one model call (`[unravel~ -p]`), against one batch-8 call and IRCAM's [nn~].

Every variant runs in its own process on one CPU (--pin, as bench/pd_render.py) and prints a
mark at S1 and at S2 seconds of audio; the figure is the process's CPU time (every thread,
from /proc at each mark) between the marks over S2 - S1, in ms per audio second. Variants:

- batch-1, batch-8: the TorchScript `forward` called in a plain Python loop on 2048-sample
  blocks of 1 and of 8 items (torch.jit.load, inference mode, one thread), back to back;
  `paced`: each call at its block's time (46 ms apart), as Pd makes them in real time: the
  CPU idles between calls, and each call starts with colder caches;
- voices xN in Python: N bridge runners of one group (`unravel.voices`), each block one
  round of the N (`Group.round`, as the group's model thread runs it), back to back, without
  Pd: what the grouping itself costs on top of the batch-8 call;
- unravel~ xN: N x `[noise~] -> [unravel~ MODEL forward 2048] -> [dac~]` in live mode
  (`pd -nogui -noaudio`, real time); the marks count from the moment every object replied
  `loaded`; `-p xN`: the same objects with `-p` (one batched call per block);
- pd alone xN: the same patch with `[*~ 1]` in place of the model: what Pd itself costs in
  real time (its scheduler, noise~, dac~), subtracted in the "net" ratios;
- nn~ xN (with --nn DIR): `[nn~ MODEL forward 2048]` the same way (marks from the load);
- before -p xN (with --before DIR): `unravel~ -p xN` from another checkout of unravel (its
  build/unravel and pybackend, e.g. a `git worktree` of an earlier commit, built with `cmake`),
  interleaved with this one's: an A/B of a change in the same run.

--gpu: the unravel~ objects with `-g` and the Python loops and voices on cuda (each block
copied there and back); without a GPU it says so and all stays on the CPU.

The machine is shared: the variants run interleaved, round after round; the figures are
medians over rounds, the ratios medians of each round's ratios. The load average is printed.
At S1 and S2 each object's `bang` status gives its underruns (those between the marks are
printed) and `poly` (the members of its group).

Usage: .venv/bin/python bench/pd_poly.py [--model PATH] [--nn DIR] [--seconds 2 6] [--rounds 3] [--pin 0]
       [--gpu] [--skip VARIANT...] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pd_render import _cpu_of, loadavg  # noqa: E402
from pdrun import Patch, pd_command  # noqa: E402

from unravel.device import cuda_available  # noqa: E402
from unravel.model import resolve_model  # noqa: E402

SR = 44100
B = 2048
N = 8
LIMIT = 240     # s a variant may take

# a plain Python loop over the TorchScript forward on batches (argv: model, device, batch,
# paced, marks...); prints "mark: S" on stderr when S seconds of audio (per item) went through;
# paced: each call at its block's time, as in real-time Pd (the CPU idles between calls); on a
# GPU each block goes there and its output back, as unravel's voices do
FLOOR = """
import sys, time, numpy as np, torch
torch.set_num_threads(1)
dev = torch.device(sys.argv[2])
m = torch.jit.load(sys.argv[1], map_location=dev).eval()
b, paced = int(sys.argv[3]), sys.argv[4] == "1"
marks = [float(s) for s in sys.argv[5:]]
n = int(marks[-1] * 44100) // 2048 * 2048 + 2048
x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (b, 1, n)).astype(np.float32))
t0 = time.monotonic()
with torch.inference_mode():
    for k in range(n // 2048):
        if paced:
            time.sleep(max(0.0, t0 + k * 2048 / 44100 - time.monotonic()))
        y = m.forward(x[..., k * 2048:(k + 1) * 2048].to(dev))
        if dev.type != "cpu":
            y.cpu()
        while marks and (k + 1) * 2048 >= marks[0] * 44100:
            print(f"mark: {marks.pop(0):g}", file=sys.stderr, flush=True)
"""

# the voices without Pd (argv: model, gpu 0|1, marks...): 8 bridge runners of one group, each
# block one round of the eight as the group's model thread runs it (voices.Group.round), back
# to back
VOICES = """
import sys, numpy as np, torch
from unravel import bridge
bridge.init(1)
sessions = [bridge.Session(sys.argv[1]) for _ in range(8)]
for s in sessions:
    s.gpu(float(sys.argv[2]))
runners = [s.prepare("forward", 2048, 64, 0, 0, False, True)[0] for s in sessions]
assert runners[0].voice is not None, "the model is not grouped"
group = runners[0].voice.group
rng = np.random.default_rng(0)
for r in runners:
    r.inbuf[:] = rng.uniform(-1, 1, r.inbuf.size)
marks = [float(s) for s in sys.argv[3:]]
k = 0
while marks:
    assert group.round(runners) == [0] * 8
    k += 1
    while marks and k * 2048 >= marks[0] * 44100:
        print(f"mark: {marks.pop(0):g}", file=sys.stderr, flush=True)
"""


def patch(d: pathlib.Path, obj: str, count: int, marks: tuple[float, float], live: bool) -> pathlib.Path:
    """`count` x noise~ -> OBJ -> dac~, DSP on at load; "mark: S" at the logical times `marks`
    counted from the load (or, `live`, from the moment every object replied `loaded`); just
    before each mark every object gets `bang` (its replies print as 'st: ...'); then quit."""
    p = Patch()
    lb = p.obj("loadbang")
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    start = p.obj("t b")
    if live:
        n, sel = p.count(count)
        p.connect(sel, 0, start, 0)
    else:
        p.connect(lb, 0, start, 0)
    status = p.obj("t b")
    st = p.obj("print st")
    for _ in range(count):
        noise, u, dac = p.obj("noise~"), p.obj(obj), p.obj("dac~")
        p.connect(noise, 0, u, 0)
        p.connect(u, 0, dac, 0)
        if live:
            loaded = p.obj("route loaded")
            p.connect(u, 1, loaded, 0)
            p.connect(loaded, 0, p.obj("t b"), 0)
            p.connect(p.n - 1, 0, n, 0)
            p.connect(status, 0, u, 0)
            p.connect(u, 1, st, 0)
    for k, s in enumerate(marks):
        dl = p.obj(f"delay {s * 1000:.0f}")
        p.connect(start, 0, dl, 0)
        t = p.obj("t b b")
        p.connect(dl, 0, t, 0)
        p.connect(t, 0, p.msg(f"; pd-mark {s:g}"), 0)
        p.connect(t, 1, status, 0)
        if k == len(marks) - 1:
            p.connect(t, 0, p.msg("; pd quit"), 0)
    p.connect(p.obj("receive pd-mark"), 0, p.obj("print mark"), 0)
    return p.write(d / f"v{abs(hash((obj, count))) % 10**8}.pd")


def window(cmd: list[str], pin: int, tries: int = 3) -> tuple[float, list[str], list[str]]:
    """(CPU seconds between the process's two "mark:" lines, its 'st:' lines before the first
    mark and those after it: the status at each mark). nn~ 1.6 built
    here now and then fails a model call at the start of DSP: an nn~ run is repeated. Lines
    saying that a model 'has not answered' (the objects' control threads waiting for the
    first one's import of torch on one CPU) are not failures."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    for attempt in range(tries):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                             preexec_fn=lambda: os.sched_setaffinity(0, {pin}))
        watch = threading.Timer(LIMIT, p.kill)     # objects that never all load (a full CPU)
        watch.start()
        cpu, lines = [], []
        for ln in p.stderr:
            if ln.startswith("mark:"):
                cpu.append(_cpu_of(p.pid))
            lines.append(ln.strip())
        rc = p.wait()
        watch.cancel()
        if rc < 0:
            raise SystemExit(f"{cmd[-1]}: killed after {LIMIT} s (too much for one CPU in real time? --skip it)")
        bad = [ln for ln in lines if (ln.lower().startswith("error") and "has not answered" not in ln)
               or "couldn't create" in ln]
        if rc == 0 and not bad and len(cpu) == 2:
            first = next(i for i, ln in enumerate(lines) if ln.startswith("mark:"))
            st = lambda part: [ln[3:].strip() for ln in part if ln.startswith("st:")]
            return cpu[1] - cpu[0], st(lines[:first]), st(lines[first:])
        if not ("nn.pd" in cmd[-1] and rc == 0 and attempt + 1 < tries):
            raise SystemExit(f"{cmd[-1]} failed ({rc}, {len(cpu)} marks): {(bad or [''.join(lines)[-2000:]])[0]}")
    raise AssertionError("unreachable")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="a TorchScript model with forward (default: the bundled one)")
    ap.add_argument("--nn", type=pathlib.Path, help="folder with an nn~ build (nn~.pd_linux) to compare with")
    ap.add_argument("--seconds", type=float, nargs=2, default=(2.0, 6.0), metavar=("S1", "S2"),
                    help="the two marks: the CPU time between them is measured (default 2 6)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    ap.add_argument("--pin", type=int, default=0, metavar="CPU", help="the one CPU every variant runs on")
    ap.add_argument("--gpu", action="store_true",
                    help="the unravel~ objects with -g, the plain-Python loops and voices on the GPU (cuda)")
    ap.add_argument("--skip", nargs="*", default=[], metavar="VARIANT",
                    help="variants not to run, e.g. 'unravel~ x8' 'nn~ x8' where 8 objects cannot "
                         "run in real time on one CPU")
    ap.add_argument("--before", type=pathlib.Path, metavar="DIR",
                    help="another checkout of unravel, built: its `unravel~ -p xN` too, interleaved")
    a = ap.parse_args()
    model = resolve_model(a.model)
    marks = tuple(a.seconds)
    span = marks[1] - marks[0]
    print(f"model {model.name}, forward on {B}-sample blocks, CPU from {marks[0]:g} s to {marks[1]:g} s "
          f"of audio, {a.rounds} rounds, all on CPU {a.pin}{', GPU (-g, cuda)' if a.gpu else ''}; "
          f"load average {loadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        pd = lambda obj, n, live, extra=(): pd_command(patch(d, obj, n, marks, live),
                                                       ["-r", str(SR), *extra], batch=False)
        dev, g = ("cuda" if cuda_available() else "cpu", "-g ") if a.gpu else ("cpu", "")
        if a.gpu and dev == "cpu":
            print("no GPU: the Python loops on the CPU, and the -g objects stay on it")
        floor = lambda b, paced: [sys.executable, "-c", FLOOR, str(model), dev, str(b), paced, *map(str, marks)]
        runs = {"batch-1": floor(1, "0"), "batch-8": floor(N, "0"),
                "batch-1 paced": floor(1, "1"), "batch-8 paced": floor(N, "1"),
                f"voices x{N} in Python": [sys.executable, "-c", VOICES, str(model), str(int(a.gpu)), *map(str, marks)],
                "unravel~ x1": pd(f"unravel~ {g}{model} forward {B}", 1, True),
                f"unravel~ x{N}": pd(f"unravel~ {g}{model} forward {B}", N, True),
                f"unravel~ -p x{N}": pd(f"unravel~ -p {g}{model} forward {B}", N, True),
                f"pd alone x{N}": pd("*~ 1", N, False)}
        if a.before:
            b = a.before.resolve()
            runs[f"before -p x{N}"] = ["env", f"PYTHONPATH={b / 'pybackend'}"] + pd_command(
                patch(d, f"unravel~ -p {g}{model} forward {B} ", N, marks, True), ["-r", str(SR)],
                batch=False, path=b / "build" / "unravel")
        if a.nn:
            nn = ("-path", str(a.nn.resolve()))
            runs["nn~ x1"] = pd(f"nn~ {model} forward {B}", 1, False, nn)
            runs[f"nn~ x{N}"] = pd(f"nn~ {model} forward {B}", N, False, nn)
        runs = {k: v for k, v in runs.items() if k not in a.skip}
        ms: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(a.rounds):
            notes = []
            for name, cmd in runs.items():
                cpu, st0, st = window(cmd, a.pin)
                ms[name].append(cpu / span * 1000)
                if st:
                    under = lambda lines: sum(int(float(ln.split()[1])) for ln in lines if ln.startswith("underruns"))
                    poly = sorted({ln.split()[2] for ln in st if ln.startswith("poly")})
                    gpu = sorted({ln.split()[1] for ln in st if ln.startswith("gpu ")})
                    notes.append(f"{name}: {under(st) - under(st0)} underruns in the window "
                                 f"({under(st)} in all), group members {'/'.join(poly)}, gpu {'/'.join(gpu)}")
            print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in ms.items())
                  + f" ms CPU per audio second; load {loadavg()}\n    " + "; ".join(notes))
        def ratio(x: str, y: str, net: bool = False) -> str:
            """median over the rounds of x / y ('-' where a variant did not run); `net`: x
            less what Pd alone costs"""
            if x not in ms or y not in ms or (net and f"pd alone x{N}" not in ms):
                return "-"
            idle = ms.get(f"pd alone x{N}", [0.0] * a.rounds)
            return f"{statistics.median((p - (i if net else 0)) / q for p, q, i in zip(ms[x], ms[y], idle)):.2f}"
        print("| variant | ms CPU per audio second (median) |\n|---|---|")
        for k, v in ms.items():
            print(f"| {k} | {statistics.median(v):.1f} |")
        p8, u8, n8 = f"unravel~ -p x{N}", f"unravel~ x{N}", f"nn~ x{N}"
        for x, y, goal in [(p8, "batch-8", "goal <= 1.15"), (p8, "batch-8 paced", ""),
                           (f"voices x{N} in Python", "batch-8", ""),
                           ("batch-8", "batch-1", ""), ("unravel~ x1", "batch-1", ""),
                           ("unravel~ x1", "batch-1 paced", ""), (p8, "unravel~ x1", ""),
                           (u8, p8, ""), (p8, n8, "goal <= 0.4"), (u8, n8, ""), ("unravel~ x1", "nn~ x1", ""),
                           (p8, f"before -p x{N}", "")]:
            if ratio(x, y) != "-":
                net = f", net of Pd alone {ratio(x, y, True)}" if x.startswith("unravel~") else ""
                print(f"{x} / {y}: {ratio(x, y)}{net}" + (f" ({goal})" if goal else ""))
        print(f"load average at the end {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
