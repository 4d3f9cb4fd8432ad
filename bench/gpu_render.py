"""`[unravel~ -g MODEL forward 2048]` against `[unravel~ MODEL forward 2048]` in `pd -batch`
(issue 24 part 5): the same noise through each, the CPU and wall time of each render and the
largest absolute difference between their outputs.

Each variant renders in its own `pd -batch` process (tests/pdrun.py's render patch), once for
--seconds of audio and once for one block: the CPU time (every thread of Pd, as the OS counts
a waited-for child) and the wall time of each, and the difference of the two over the audio
seconds between them (start-up, CUDA's included, left out). The object's status after the
render says where it ran (`gpu 1`: on the GPU); without a GPU, `-g` posts that it stays on the
CPU and both render on the CPU (the difference is then 0, but for a model that draws noise,
as RAVE v2's forward does: a second CPU render gives the run-to-run difference to compare
with). Several --model are run in turn.

Usage: .venv/bin/python bench/gpu_render.py [--model default [PATH ...]] [--seconds 10]
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import sys
import tempfile

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import Chain, render_patch, run_pd  # noqa: E402

from unravel.model import resolve_model  # noqa: E402

SR = 44100
B = 2048


def render(d: pathlib.Path, obj: str, wav: str, frames: int, name: str) -> tuple[np.ndarray, float, float, str]:
    """(output, CPU s, wall s, the object's `gpu` status) of one `pd -batch` render of `wav`
    (its first `frames` frames) through `obj`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run_pd(render_patch(d / f"{name}.pd", [Chain(obj, 1, 1, wav, f"{name}.wav")], frames, tail=B),
               args=["-r", str(SR)], timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0 or r.errors:
        raise SystemExit(f"{obj}: pd failed ({r.returncode}): {(r.errors or r.lines[-3:] or [''])[0]}")
    gpu = [ln.split()[1] for ln in r.after("info0:") if ln.startswith("gpu ")]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return sf.read(d / f"{name}.wav", dtype="float32")[0], cpu, r.seconds, (gpu or ["?"])[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["default"], help="models with forward (default: the bundled one)")
    ap.add_argument("--seconds", type=float, default=10.0, help="audio rendered (default 10)")
    a = ap.parse_args()
    frames = int(a.seconds * SR) // B * B
    span = (frames - B) / SR
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        x = np.random.default_rng(0).uniform(-0.5, 0.5, frames).astype(np.float32)
        sf.write(d / "x.wav", x, SR, subtype="FLOAT")
        for m in a.model:
            model = resolve_model(m)
            print(f"model {model.name}: forward on {B}-sample blocks, {frames / SR:.2f} s of noise, pd -batch")
            out, where = {}, {}
            print(f"  {'object':<30} {'where':>5} {'CPU s':>7} {'wall s':>7} {'CPU s/audio s':>14} {'wall s/audio s':>15}")
            for flag in ("-g ", ""):
                obj = f"unravel~ {flag}{model} forward {B}"
                name = "gpu" if flag else "cpu"
                y, cpu, wall, where[name] = render(d, obj, "x.wav", frames, name)
                _, cpu1, wall1, _ = render(d, obj, "x.wav", B, name + "1")
                out[name] = y
                label = f"[unravel~ {flag}MODEL forward]"
                print(f"  {label:<30} {'gpu' if where[name] == '1' else 'cpu':>5} {cpu:>7.2f} {wall:>7.2f} "
                      f"{(cpu - cpu1) / span:>14.3f} {(wall - wall1) / span:>15.3f}")
            if where["gpu"] != "1":
                print("  no GPU: both on the CPU")
            again = render(d, f"unravel~ {model} forward {B}", "x.wav", frames, "again")[0]
            diff = lambda y: f"{float(np.max(np.abs(y - out['cpu']))):.3g}"
            print(f"  largest |-g - CPU| {diff(out['gpu'])}, |CPU - CPU again| {diff(again)} (a model that "
                  f"draws noise differs from run to run), output peak {float(np.max(np.abs(out['cpu']))):.3g}, "
                  f"{len(out['cpu'])} samples; per audio second: the long render less the one-block one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
