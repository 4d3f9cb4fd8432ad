"""Bends you can play (issue 23): a bend amount, a channel scale or a morph t driven by a
[line] at 50 Hz while real-time Pd plays the model, on the largest layer of a model.

Each run is a fresh `pd -nogui -noaudio` process in REAL TIME (live mode) playing
`[noise~] -> [unravel~ MODEL forward 2048]` into an array from the moment the model takes
over (`loaded`). After --warm seconds a [line]
(grain 20 ms) moves the value from A to B over --seconds and every step becomes one message
to the object; then `bang` reports the object's underruns and the recording is written.
Variants, interleaved, --runs times each:
- still:    the same [line] into a [print]-less sink (no message reaches the object);
- bend:     `bend LAYER offset $1` (the elementwise bend), 0 -> 0.05;
- channels: `channels LAYER scale $1` (every output channel), 1 -> 0;
- morph:    `morph B $1` (B: the model with three layers bent, made here), 0 -> 1;
  each after its first value (`bend LAYER offset 0`, `channels LAYER scale 1`, `morph B 0`:
  the model unchanged) at the takeover, during --warm: the object's first change copies a
  module it shares (copy on write), which is no cost of the updates;
- output:   `output LAYER offset $1` (on the layer's output, in the graph), 0 -> 0.5, after
            `output LAYER offset 0` at the takeover (it rebuilds the methods, during --warm;
            each value then is read at the next call); output-new: the same without that
            first message (its first value rebuilds the methods while the value moves).
For each: underruns while the value moves (the object's own count, from a `bang` as the
ramp starts to the one after it), messages applied (channels, morph and output reply
each, counted from the ramp's start; a burst keeps the newest, so fewer than sent when the
control thread is behind; bend replies nothing: its values sent are counted), clicks: the
largest sample-to-sample jump of the output while the value moves, divided by the largest jump
of the `still` run's same window (1 = no jump bigger than the model's own noise makes), and
CPU: the pd process's CPU time (every thread, from /proc as bench/pd_render.py reads it) from
the ramp's start to its end, as a share of one core (CPU %), and minus the same round's
`still` run over the same window (extra %: the share of the audio thread's budget, 1 s of CPU
per second of audio; ms/update: per message applied).
Backend: the Bender call each message makes (`bend`, `channels`, `morph`, `output` with the
op set once) on the same layer, timed in this process on the ramp's values, interleaved, one
torch thread: what a message costs the control thread without Pd and the bridge (medians).
Medians over the runs. The machine is shared: the load average is printed.

Usage: .venv/bin/python bench/pd_play.py [--model PATH] [--runs 3] [--seconds 3] [--warm 2] [--only output ...]
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
import time

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pd_render import _cpu_of  # noqa: E402
from pdrun import Patch, is_error, pd_command  # noqa: E402

from unravel import modelinfo  # noqa: E402
from unravel.bend import Bender  # noqa: E402
from unravel.model import load_model  # noqa: E402

SR = 44100


def largest_layer(model) -> str:
    """The learned conv/linear weight with the most elements."""
    return max((layer for layer in modelinfo.layers(model.module) if layer.learned and len(layer.shape) > 1),
               key=lambda layer: layer.numel).name


def play_patch(folder: pathlib.Path, model: str, message: str | None, a: float, b: float,
               warm: float, seconds: float, setup: str | None = None) -> pathlib.Path:
    n = int((warm + seconds + 0.5) * SR)
    p = Patch()
    lb = p.obj("loadbang")
    p.connect(lb, 0, p.msg("; pd dsp 1"), 0)
    noise = p.obj("noise~")
    u = p.obj(f"unravel~ {model} forward 2048")
    p.connect(noise, 0, u, 0)
    p.obj(f"table rec {n}")
    rec = p.obj("tabwrite~ rec")
    p.connect(u, 0, rec, 0)
    p.connect(u, 1, p.obj("print reply"), 0)
    loaded = p.obj("route loaded")      # everything counts from the model's takeover
    p.connect(u, 1, loaded, 0)
    path = p.obj("route float")         # (`loaded <path>`, not the status line `loaded 1`)
    p.connect(loaded, 0, path, 0)
    go = p.obj("t b b b")
    p.connect(path, 1, go, 0)
    p.connect(go, 2, rec, 0)
    start = p.obj(f"delay {warm * 1000:.0f}")
    p.connect(go, 1, start, 0)
    if setup:                           # at the takeover, before the value moves
        first = p.msg(setup)
        p.connect(go, 1, first, 0)
        p.connect(first, 0, u, 0)
    before = p.msg("bang")              # the underruns when the value starts to move
    p.connect(start, 0, before, 0)
    mark = p.obj("print mark")          # the CPU time is read at its lines
    p.connect(start, 0, mark, 0)
    stop = p.obj(f"delay {seconds * 1000:.0f}")
    p.connect(start, 0, stop, 0)
    p.connect(stop, 0, mark, 0)
    p.connect(before, 0, u, 0)
    ramp = p.msg(f"{a}, {b} {seconds * 1000:.0f}")
    p.connect(start, 0, ramp, 0)
    line = p.obj("line 0 20")
    p.connect(ramp, 0, line, 0)
    if message:
        msg = p.msg(message)
        p.connect(line, 0, msg, 0)
        p.connect(msg, 0, u, 0)
    end = p.obj(f"delay {(warm + seconds + 0.5) * 1000:.0f}")
    p.connect(go, 0, end, 0)
    done = p.obj("t b b b")
    p.connect(end, 0, done, 0)
    status = p.msg("bang")
    p.connect(done, 2, status, 0)
    p.connect(status, 0, u, 0)
    write = p.msg("write -bytes 4 rec.wav rec")
    p.connect(done, 1, write, 0)
    sfw = p.obj("soundfiler")
    p.connect(write, 0, sfw, 0)
    p.connect(done, 0, p.msg("; pd quit"), 0)
    return p.write(folder / "play.pd")


APPLIED = ("channels", "morph", "output", "output-new")     # the variants whose messages reply


def run_one(folder: pathlib.Path, model: str, message: str | None, a: float, b: float,
            warm: float, seconds: float, setup: str | None = None) -> dict:
    patch = play_patch(folder, model, message, a, b, warm, seconds, setup)
    e = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    p = subprocess.Popen(pd_command(patch, batch=False), cwd=folder, env=e, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    timer = threading.Timer(warm + seconds + 120, p.kill)
    timer.start()
    lines, cpu = [], []
    for ln in p.stderr:
        if ln.startswith("mark:"):
            cpu.append(_cpu_of(p.pid))
        lines.append(ln.strip())
    p.wait()
    timer.cancel()
    replies = [ln[6:].strip() for ln in lines if ln.startswith("reply:")]
    under = [int(float(x.split()[1])) for x in replies if x.startswith("underruns")]
    first = next((i for i, ln in enumerate(lines) if ln.startswith("mark:")), len(lines))
    ramp = [ln[6:].strip() for ln in lines[first:] if ln.startswith("reply:")]
    y, _ = sf.read(folder / "rec.wav", dtype="float32")
    lo, hi = int(warm * SR), int((warm + seconds) * SR)
    jumps = np.abs(np.diff(y[lo:hi]))
    return {"underruns": under[-1] - under[0] if len(under) > 1 else None,
            "applied": sum(1 for x in ramp if x.split()[0] in APPLIED),
            "max_jump": float(jumps.max()) if jumps.size else 0.0,
            "cpu": cpu[1] - cpu[0] if len(cpu) == 2 else float("nan"),
            "errors": [ln for ln in lines if is_error(ln)] + ([f"exit {p.returncode}"] if p.returncode else [])}


def backend_ms(model: str, layer: str, other: pathlib.Path, variants: dict, n: int) -> dict[str, float]:
    """Median ms of the Bender call each variant's message makes, on n values of its ramp,
    the variants interleaved (a fresh model; `output` with its op set first)."""
    b = Bender(load_model(model, warmup=False))
    b.output(layer, "offset", [0.0])
    calls = {"bend": lambda v: b.bend(layer, "offset", v), "channels": lambda v: b.channels(layer, "scale", v),
             "morph": lambda v: b.morph(other, v), "output": lambda v: b.output(layer, "offset", [v])}
    calls = {k: f for k, f in calls.items() if k in variants}
    ms: dict[str, list[float]] = {k: [] for k in calls}
    for i in range(n):
        for k, f in calls.items():
            a, z = variants[k][1:3]
            t0 = time.perf_counter()
            f(a + (z - a) * i / (n - 1))
            ms[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in ms.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "pybackend/unravel/data/default.ts"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warm", type=float, default=2.0)
    ap.add_argument("--only", nargs="+", metavar="VARIANT", help="these variants (and still)")
    args = ap.parse_args()
    folder = pathlib.Path(tempfile.mkdtemp(prefix="pd_play-"))
    m = load_model(args.model, warmup=False)
    layer = largest_layer(m)
    bent = Bender(m)
    learned = [x.name for x in modelinfo.layers(m.module) if x.learned]
    for name in (learned[0], layer, learned[-1]):
        bent.bend(name, "spread", 1.3)
    other = bent.save(folder / "b.ts")
    variants = {"still": None,
                "bend": (f"bend {layer} offset $1", 0.0, 0.05, f"bend {layer} offset 0"),
                "channels": (f"channels {layer} scale $1", 1.0, 0.0, f"channels {layer} scale 1"),
                "morph": (f"morph {other} $1", 0.0, 1.0, f"morph {other} 0"),
                "output": (f"output {layer} offset $1", 0.0, 0.5, f"output {layer} offset 0"),
                "output-new": (f"output {layer} offset $1", 0.0, 0.5)}
    if args.only:
        variants = {k: v for k, v in variants.items() if k == "still" or k in args.only}
    sent = int(args.seconds * 50) + 1      # [line]'s first value, then one per 20 ms
    print(f"model {args.model}, largest layer {layer} ({dict(m.module.named_parameters())[layer].numel()} "
          f"weights), {args.seconds:g} s at 50 Hz = {sent} values; load {os.getloadavg()[0]:.2f}")
    backend = backend_ms(args.model, layer, other, variants, sent)
    results: dict[str, list[dict]] = {k: [] for k in variants}
    for _ in range(args.runs):
        for name, v in variants.items():
            message, a, b, *setup = v if v else (None, 0.0, 1.0)
            results[name].append(run_one(folder, args.model, message, a, b, args.warm, args.seconds,
                                         *setup))
    still = statistics.median(r["max_jump"] for r in results["still"])
    print(f"{'variant':<10} {'underruns':>10} {'applied':>8} {'click ratio':>12} {'CPU %':>6} "
          f"{'extra %':>8} {'ms/update':>10} {'backend ms':>11}  errors")
    for name, rs in results.items():
        under = [r["underruns"] for r in rs if r["underruns"] is not None]
        extra = [r["cpu"] - s["cpu"] for r, s in zip(rs, results["still"])]
        per = [x * 1000 / (max(r["applied"], 1) if name in APPLIED else sent) for x, r in zip(extra, rs)]
        print(f"{name:<10} {statistics.median(under) if under else 'n/a':>10} "
              f"{statistics.median(r['applied'] for r in rs) if name in APPLIED else 'n/a':>8} "
              f"{statistics.median(r['max_jump'] for r in rs) / still:>12.2f} "
              f"{statistics.median(r['cpu'] for r in rs) * 100 / args.seconds:>6.1f} "
              f"{statistics.median(extra) * 100 / args.seconds:>8.1f} "
              f"{statistics.median(per) if name != 'still' else 0.0:>10.3f} "
              f"{backend.get(name, float('nan')):>11.3f}  "
              f"{sum(len(r['errors']) for r in rs)} {next((e for r in rs for e in r['errors']), '')[:90]}")
    print("per run, CPU s in the window/underruns: " + "; ".join(
        f"{k} " + " ".join(f"{r['cpu']:.2f}/{r['underruns']}" for r in rs) for k, rs in results.items()))
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
