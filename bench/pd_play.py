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
- output:   `output LAYER offset $1` (on the layer's output, in the graph), 0 -> 0.5, after
            `output LAYER offset 0` at the takeover (it rebuilds the methods, during --warm;
            each value then is read at the next call); output-new: the same without that
            first message (its first value rebuilds the methods while the value moves).
For each: underruns while the value moves (the object's own count, from a `bang` as the
ramp starts to the one after it), messages applied (channels, morph and output reply
each; a burst keeps the newest, so fewer than sent when the control thread is behind; bend
replies nothing), and clicks: the largest
sample-to-sample jump of the output while the value moves, divided by the largest jump of the
`still` run's same window (1 = no jump bigger than the model's own noise makes).
Medians over the runs. The machine is shared: the load average is printed.

Usage: .venv/bin/python bench/pd_play.py [--model PATH] [--runs 3] [--seconds 3] [--warm 2] [--only output ...]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import Patch, run_pd  # noqa: E402

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
    r = run_pd(patch, timeout=warm + seconds + 120, batch=False)
    replies = r.after("reply:")
    under = [int(float(x.split()[1])) for x in replies if x.startswith("underruns")]
    y, _ = sf.read(folder / "rec.wav", dtype="float32")
    lo, hi = int(warm * SR), int((warm + seconds) * SR)
    jumps = np.abs(np.diff(y[lo:hi]))
    applied = sum(1 for x in replies if x.split()[0] in APPLIED)  # (output: + its first message)
    return {"underruns": under[-1] - under[0] if len(under) > 1 else None, "applied": applied,
            "max_jump": float(jumps.max()) if jumps.size else 0.0, "errors": r.errors}


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
                "bend": (f"bend {layer} offset $1", 0.0, 0.05),
                "channels": (f"channels {layer} scale $1", 1.0, 0.0),
                "morph": (f"morph {other} $1", 0.0, 1.0),
                "output": (f"output {layer} offset $1", 0.0, 0.5, f"output {layer} offset 0"),
                "output-new": (f"output {layer} offset $1", 0.0, 0.5)}
    if args.only:
        variants = {k: v for k, v in variants.items() if k == "still" or k in args.only}
    print(f"model {args.model}, largest layer {layer} ({dict(m.module.named_parameters())[layer].numel()} "
          f"weights), {args.seconds:g} s at 50 Hz = {int(args.seconds * 50)} values; load {os.getloadavg()[0]:.2f}")
    results: dict[str, list[dict]] = {k: [] for k in variants}
    for _ in range(args.runs):
        for name, v in variants.items():
            message, a, b, *setup = v if v else (None, 0.0, 1.0)
            results[name].append(run_one(folder, args.model, message, a, b, args.warm, args.seconds,
                                         *setup))
    still = statistics.median(r["max_jump"] for r in results["still"])
    print(f"{'variant':<10} {'underruns':>10} {'applied':>8} {'click ratio':>12}  errors")
    for name, rs in results.items():
        under = [r["underruns"] for r in rs if r["underruns"] is not None]
        print(f"{name:<10} {statistics.median(under) if under else 'n/a':>10} "
              f"{statistics.median(r['applied'] for r in rs) if name in APPLIED else 'n/a':>8} "
              f"{statistics.median(r['max_jump'] for r in rs) / still:>12.2f}  "
              f"{sum(len(r['errors']) for r in rs)} {next((e for r in rs for e in r['errors']), '')[:90]}")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
