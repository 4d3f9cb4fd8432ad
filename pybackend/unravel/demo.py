"""`make demo`: the UnRAVEl job on the bundled model and loop, no download.

Encode the bundled loop, generate a fibo pattern from its statistics (fixed seed), decode,
and write under `out/` (relative to the current folder): demo.wav, demo.npy,
demo.latent.wav, demo.json, and the loop's own encoding loop.npy / loop.latent.wav.
Re-running replaces these files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from unravel import audio, generator, latents, pipeline, safewrite, tempo
from unravel.errors import UnravelError

LOOP = Path(__file__).resolve().parent / "data" / "loop.wav"
SEED = 2024
PATTERN, DIST, BPM, LOOPS = "fibo", "normal", 120.0, 4


def run(out_dir: str | Path = "out", model_spec: str = "default", threads: int = 1) -> dict[str, Path]:
    """Run the demo; returns the written files by role."""
    from unravel.model import load_model

    model = load_model(model_spec, threads=threads)
    out = safewrite.check_writable_dir(out_dir)
    [loop_npy] = pipeline.encode_files(model, [LOOP], out, latent_wav=True, progress=False, force=True)
    z = latents.read(loop_npy, model.latent_dims)
    t, err = tempo.nearest(BPM, model.sr, model.ratio)
    g = generator.generate(z, PATTERN, DIST, points=t.k, loops=LOOPS, seed=SEED)
    rate = latents.latent_rate(model.sr, model.ratio)
    files = {
        "loop latents": loop_npy,
        "demo latents": latents.write_npy(out / "demo.npy", g, force=True),
        "demo latent wav": latents.write_wav(out / f"demo{latents.LATENT_WAV_SUFFIX}", g, rate, force=True),
    }
    sidecar = {"command": "python -m unravel.demo", "model": str(model.path), "input": str(LOOP),
               "pattern": PATTERN, "dist": DIST, "iqr": False, "points": t.k,
               "bpm": {"target": BPM, "bpm": t.bpm, "error": err}, "loops": LOOPS, "seed": SEED,
               "sr": model.sr, "ratio": model.ratio, "latent_rate": rate,
               "shape": [1, *map(int, g.shape)]}
    files["sidecar"] = latents.write_json(out / "demo.json", sidecar, force=True)
    y = model.decode(g)
    files["audio"] = audio.write(out / "demo.wav", y, model.sr, force=True)
    rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    print(f"demo: {LOOP.name} encoded with {model.path.name} ({model.latent_dims} dims), "
          f"{PATTERN} pattern of {t.k} frames ({t.bpm:.2f} BPM) x {LOOPS}, seed {SEED}")
    for role, p in files.items():
        print(f"  {role:<16} {p}")
    print(f"  {y.shape[1] / model.sr:.2f} s of audio at {model.sr} Hz, RMS {20 * np.log10(max(rms, 1e-12)):.1f} dBFS")
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m unravel.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.add_argument("--model", default="default", help="model (default: the bundled one)")
    args = p.parse_args(argv)
    try:
        run(args.out, args.model)
    except UnravelError as e:
        print(f"unravel demo: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
