"""From `generate` (and `diffuse`) to the first audible frame of the new set, in loops (issue
21), in REAL-TIME Pd (`pd -nogui -noaudio -r 44100`, live mode).

Each measurement is a fresh Pd process: `[chns0n D pl]` plays the set A (random latents, F
frames a loop) through `[unravel~ -m MODEL decode 2048]`. Half-way through A's loop 1 the
object gets a job that writes the set B: `generate input-array A output-array B pattern
default points F seed S` or `diffuse output-array B steps 10 latent-length F seed S`
(the bundled diffusion checkpoint); its reply sends `arrays B` to the player, which switches
at its next loop boundary. Timed in Pd (logical samples from Render: real time here):
- job ms: from the message to the job's `done` reply;
- boundaries: which loop boundary after the request the new set came in at (1: the next
  one, the goal);
- audible, loops: (that boundary + the decoder's latency - the request) / the loop's length:
  when the first frame of the new set is heard (the latency is the object's own, from its
  `bang` status).
Each process sends --requests jobs, each half a loop after the boundary where the one before
came in; the first request of a process (its warm-up: the job thread's imports for
`generate`) is reported apart from the later ones. Medians over --runs processes.

Usage: .venv/bin/python bench/pd_switch.py [--model default ...] [--frames 16 64]
       [--jobs generate diffuse] [--runs 3] [--requests 3]
(bench/pd_live.py prints this table too, for its --model.)
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import BUILD, Patch, run_pd  # noqa: E402

from unravel.archive import method_params, resolve_model  # noqa: E402

RATIO = 2048
JOBS = {"generate": "generate input-array A output-array B pattern default points {F} seed {S}",
        "diffuse": "diffuse output-array B steps 10 latent-length {F} seed {S}"}


def switch_patch(folder: pathlib.Path, model: pathlib.Path, dims: int, frames: int, job: str,
                 requests: int) -> pathlib.Path:
    """The patch of one Pd process (see the module's docstring): `requests` jobs one after
    the other, each sent half a loop after the boundary where the one before came in (the
    first half-way through loop 1). Prints `asked:`, `done:` and `loop:` (samples from
    Render) and the object's status (`latency`); quits at the boundary after the last switch."""
    loop = frames * RATIO
    rng = np.random.default_rng(frames)
    p = Patch()
    for k in range(dims):
        p.obj(f"array define A-{k} {frames}")
    lb = p.obj("loadbang")
    pl = p.obj(f"chns0n {dims} pl")
    u = p.obj(f"unravel~ -m {model} decode 2048")
    p.connect(pl, 0, u, 0)
    p.connect(p.obj("r job"), 0, u, 0)
    p.connect(u, 1, p.obj("print info"), 0)
    rec = p.obj("r rec")
    clock = {}
    for name in ("asked", "done", "loop"):
        t = p.obj("timer 1 samp")
        p.connect(rec, 0, t, 0)
        p.connect(t, 0, p.obj(f"print {name}"), 0)
        clock[name] = t
    # a reply: time it, play B from the next boundary, and arm the next request
    info = p.obj("route done")
    p.connect(u, 1, info, 0)
    isb = p.obj("route generate diffuse")
    p.connect(info, 0, isb, 0)
    got = p.obj("t b b b")
    p.connect(isb, 0, got, 0)
    p.connect(isb, 1, got, 0)
    p.connect(got, 2, clock["done"], 1)
    p.connect(got, 1, p.msg("; pl arrays B"), 0)
    armed = p.obj("spigot")
    p.connect(got, 0, p.msg("1"), 0)
    p.connect(p.n - 1, 0, armed, 1)
    # each boundary: time it; the first one after a reply (the switch) starts the next
    lo = p.obj("route loop")
    p.connect(pl, 1, lo, 0)
    lt = p.obj("t b b")
    p.connect(lo, 0, lt, 0)
    p.connect(lt, 1, clock["loop"], 1)
    p.connect(lt, 0, armed, 0)
    sw = p.obj("t b b")
    p.connect(armed, 0, sw, 0)
    p.connect(sw, 1, p.msg("0"), 0)
    p.connect(p.n - 1, 0, armed, 1)
    half = p.obj(f"delay {loop // 2} 1 samp")
    p.connect(sw, 0, half, 0)
    # the requests: the first half-way through loop 1, the next after each switch
    start = p.obj("delay 500")          # the model loads in the background meanwhile
    p.connect(lb, 0, start, 0)
    go = p.obj("t b b")
    p.connect(start, 0, go, 0)
    fill = "; ".join(f"A-{k} 0 {' '.join(f'{v:.6g}' for v in rng.standard_normal(frames))}"
                     for k in range(dims))
    p.connect(go, 1, p.msg(f"; pd dsp 1; {fill}; rec bang; pl arrays A; pl render 1; job bang"), 0)
    first = p.obj(f"delay {loop + loop // 2} 1 samp")
    p.connect(go, 0, first, 0)
    n = p.obj("f")
    plus = p.obj("+ 1")
    p.connect(first, 0, n, 0)
    p.connect(half, 0, n, 0)
    p.connect(n, 0, plus, 0)
    p.connect(plus, 0, n, 1)
    more = p.obj(f"moses {requests}")
    p.connect(n, 0, more, 0)
    ask = p.obj("t f b")
    p.connect(more, 0, ask, 0)
    p.connect(ask, 1, clock["asked"], 1)
    p.connect(ask, 0, p.msg("; job " + JOBS[job].format(F=frames, S="$1")), 0)
    p.connect(more, 1, p.msg("; pd dsp 0; pd quit"), 0)
    late = p.obj("delay 180000")
    p.connect(lb, 0, late, 0)
    p.connect(late, 0, p.msg("; pd quit"), 0)
    return p.write(folder / "switch.pd")


def measure(model: pathlib.Path, dims: int, frames: int, job: str, requests: int,
            folder: pathlib.Path) -> list[dict]:
    """One Pd process: per request {'job_ms', 'boundaries', 'audible_loops'}."""
    folder.mkdir(parents=True, exist_ok=True)
    r = run_pd(switch_patch(folder, model, dims, frames, job, requests), args=["-r", "44100"],
               batch=False, timeout=300)

    def nums(prefix: str) -> list[float]:
        return [float(v.split()[0]) for v in r.after(prefix)]
    asked, done, loops = nums("asked:"), nums("done:"), nums("loop:")
    lat = [float(v.split()[1]) for v in r.after("info:") if v.startswith("latency")]
    if r.errors or not lat or len(done) < len(asked):
        print(f"    {model.name} {job} {frames}: {len(done)}/{len(asked)} replies "
              f"{(r.errors or r.lines[-3:])[:3]}", file=sys.stderr)
    loop = frames * RATIO
    out = []
    for a, d in zip(asked, done):
        switch = next((t for t in loops if t >= d), None)
        if switch is not None:
            out.append({"job_ms": (d - a) / 44.1, "boundaries": round((switch - a) / loop + 0.5),
                        "audible_loops": (switch + lat[0] - a) / loop})
    return out


def table(models: list[pathlib.Path], frames_list: list[int], jobs: list[str], runs: int,
          requests: int = 3) -> None:
    """Measure every (model, frames, job) in `runs` Pd processes of `requests` requests each,
    interleaved; print a Markdown table, the first request of a process apart (cold)."""
    rows: dict[tuple, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            for model in models:
                dims = method_params(model)["decode"].in_channels
                for frames in frames_list:
                    for job in jobs:
                        ms = measure(model, dims, frames, job, requests,
                                     pathlib.Path(tmp) / f"{model.stem}-{frames}-{job}-{run}")
                        for i, m in enumerate(ms):
                            rows.setdefault((model.name, frames, job, "first" if i == 0 else "later"),
                                            []).append(m)
    print()
    print("| model | loop frames | job | request | job ms | boundary it came in at (1: the next) | "
          "first audible frame, loops after the request | requests |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, frames, job, which), ms in sorted(rows.items()):
        med = {k: statistics.median(m[k] for m in ms) for k in ms[0]}
        print(f"| {name} | {frames} ({frames * RATIO / 44100:.2f} s) | {job} | {which} | "
              f"{med['job_ms']:.0f} | {med['boundaries']:g} (all: "
              f"{' '.join(str(m['boundaries']) for m in ms)}) | {med['audible_loops']:.2f} | {len(ms)} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["default"], help="models (default: the bundled one)")
    ap.add_argument("--frames", nargs="+", type=int, default=[16, 64], help="loop lengths in frames")
    ap.add_argument("--jobs", nargs="+", choices=list(JOBS), default=list(JOBS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=3, help="requests per Pd process (the first is cold)")
    a = ap.parse_args()
    print(f"[unravel~] from {BUILD}; real-time pd -nogui -noaudio -r 44100; {a.runs} Pd processes "
          f"of {a.requests} requests each")
    table([resolve_model(m) for m in a.model], a.frames, a.jobs, a.runs, a.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
