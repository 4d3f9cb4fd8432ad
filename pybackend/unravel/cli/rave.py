"""The model and latent commands: info, encode, stats, generate, tempo, decode, bend.

Each `cmd_*` calls the backend (unravel.model, pipeline, stats, tempo, bend); the backend is
imported when the command runs, so `unravel --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from unravel import limits
from unravel.cli.options import float_in, int_in
from unravel.errors import UnravelError

MODEL_HELP = "TorchScript model file ('default' = the bundled model)"


def _load(args: argparse.Namespace, spec: str, warmup: bool = True):
    from unravel.model import load_model
    return load_model(spec, threads=args.threads, warmup=warmup,
                      device=getattr(args, "device", "cpu"))


def _print_paths(paths: Sequence[Path]) -> None:
    for p in paths:
        print(p)


# --------------------------------------------------------------------------- commands


def _model_files(spec: str) -> list[str]:
    """A model spec, or the `.ts` files of a folder and its subfolders (sorted)."""
    folder = Path(spec)
    if not folder.is_dir():
        return [spec]
    found = sorted(str(p) for p in folder.rglob("*.ts")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not found:
        raise UnravelError(f"{folder}: folder has no .ts model files")
    return found


def cmd_info(args: argparse.Namespace) -> int:
    specs = _model_files(args.model)
    if args.csv and Path(args.csv).exists() and not args.force:
        raise UnravelError(f"{args.csv}: already exists (use --force to overwrite)")
    infos = [_load(args, spec, warmup=False).info() for spec in specs]
    if args.csv:
        from unravel.safewrite import write_file
        write_file(args.csv, lambda tmp: _write_info_csv(tmp, infos), force=args.force)
    if args.json:
        print(json.dumps(infos[0] if len(infos) == 1 and not Path(args.model).is_dir() else infos,
                         indent=2))
    else:
        print("\n\n".join(_info_text(info) for info in infos))
    if args.csv:
        print(f"csv: {args.csv}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _info_text(info: dict) -> str:
    """What `unravel info` prints for one model."""
    def known(v) -> str:
        return "unknown" if v is None else str(v)
    encoder = known(info["encoder"]) + (f" (around {info['encoder_inner']})" if info["encoder_inner"] else "")
    lines = [f"model        {info['path']}",
             f"sample rate  {info['sr']} Hz",
             f"latent dims  {info['latent_dims']}",
             f"ratio        {info['ratio']}",
             f"channels     {info['in_channels']} in, {info['out_channels']} out",
             f"encoder      {encoder}",
             f"decoder      {known(info['decoder'])}",
             f"stereo       {known(info['stereo'])}",
             "methods      " + ", ".join(
                 f"{m} [{p['in_channels']}, {p['in_ratio']}, {p['out_channels']}, {p['out_ratio']}]"
                 for m, p in info["methods"].items())]
    attrs = info["attributes"]
    lines.append("attributes   " + (", ".join(f"{a} = {v}" for a, v in attrs.items()) or "(none)"))
    lines.append(f"parameters   {info['parameters']}")
    lines.append(f"layers       {len(info['layers'])}")
    width = max((len(t["name"]) for t in info["layers"] + info["buffers"]), default=4)
    for layer in info["layers"]:
        shape = "x".join(str(s) for s in layer["shape"]) or "scalar"
        fixed = "" if layer["learned"] else "  (fixed, not learned)"
        lines.append(f"  {layer['name']:<{width}}  {shape:<16} {layer['numel']:>10}{fixed}")
    lines.append(f"buffers      {len(info['buffers'])}")
    for buf in info["buffers"]:
        shape = "x".join(str(s) for s in buf["shape"]) or "scalar"
        lines.append(f"  {buf['name']:<{width}}  {shape:<16} {buf['numel']:>10}")
    return "\n".join(lines)


def _write_info_csv(path: str, infos: list[dict]) -> None:
    """The parameter table of each model as CSV: model, kind (parameter/buffer), name, shape, numel, learned."""
    import csv
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "kind", "name", "shape", "numel", "learned"])
        for info in infos:
            for layer in info["layers"]:
                w.writerow([info["path"], "parameter", layer["name"], "x".join(map(str, layer["shape"])),
                            layer["numel"], layer["learned"]])
            for buf in info["buffers"]:
                w.writerow([info["path"], "buffer", buf["name"], "x".join(map(str, buf["shape"])),
                            buf["numel"], False])


def cmd_encode(args: argparse.Namespace) -> int:
    from unravel import pipeline
    from unravel.workers import check_jobs
    # fail on bad inputs or outputs before loading the model
    check_jobs(args.jobs)
    pipeline.encode_targets(args.inputs, args.output, args.latent_wav, args.force, args.extensions)
    model = _load(args, args.model)
    pipeline.encode_files(model, args.inputs, args.output, latent_wav=args.latent_wav,
                          force=args.force, extensions=args.extensions,
                          written=lambda p: print(p, flush=True), jobs=args.jobs)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from unravel import pipeline, stats
    paths, arrays = pipeline.read_latents(args.latents)
    import numpy as np
    z = np.concatenate(arrays, axis=1)
    s = stats.compute(z)
    if args.plot:
        title = paths[0].name if len(paths) == 1 else f"{len(paths)} files"
        stats.plot(z, args.plot, title=title, force=args.force)
    if args.json:
        print(json.dumps({"files": [str(p) for p in paths], **s.to_dict(args.iqr)}, indent=2))
    else:
        print(", ".join(str(p) for p in paths))
        print(stats.format_table(s, args.iqr))
    if args.plot:
        print(f"plot: {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _sr_ratio(args: argparse.Namespace) -> tuple[int, int]:
    if getattr(args, "model", None):
        model = _load(args, args.model, warmup=False)
        if model.ratio is None:
            raise UnravelError(f"{model.path}: model does not say its ratio")
        return model.sr, model.ratio
    if args.sr <= 0 or args.ratio <= 0:
        raise UnravelError(f"sample rate and ratio must be > 0, got {args.sr} and {args.ratio}")
    return args.sr, args.ratio


def cmd_generate(args: argparse.Namespace) -> int:
    from unravel import patterns, pipeline
    sr, ratio = _sr_ratio(args)
    paths = pipeline.generate_files(args.latents, args.output, pattern=args.pattern, dist=args.dist,
                                    iqr=args.iqr, points=args.points, bpm=args.bpm, loops=args.loops,
                                    files=args.files, seed=args.seed, sr=sr, ratio=ratio,
                                    skip=args.skip, plot=args.plot, force=args.force)
    k, info = pipeline.resolve_points(args.points, args.bpm, sr, ratio)
    if info is not None and args.bpm is not None:
        print(f"{k} frames per block: {info['bpm']:.2f} BPM (target {info['target']:g}, "
              f"error {info['error']:+.2f})", file=sys.stderr)
    if args.pattern == "fibo" and k < patterns.FIBO_FULL_RUN:
        steps = patterns.fibonacci(k)
        print(f"fibo: {len(steps)} Fibonacci steps ({', '.join(map(str, steps))}) from {k} points; "
              f"a full run (as UnRAVEl's generator requires) needs {patterns.FIBO_FULL_RUN}",
              file=sys.stderr)
    for p in paths:
        _print_paths(pipeline.generated_outputs(p))
    if args.plot:
        print(args.plot)
    return 0


def cmd_tempo(args: argparse.Namespace) -> int:
    from unravel import tempo
    sr, ratio = _sr_ratio(args)
    rate = tempo.frame_rate(sr, ratio)
    if args.bpm is not None:
        t, err = tempo.nearest(args.bpm, sr, ratio)
        print(f"{sr} Hz / {ratio}: {rate:.3f} latent frames per second")
        print(f"nearest to {args.bpm:g} BPM: k = {t.k} frames, {t.bpm:.2f} BPM "
              f"(error {err:+.2f}), double time {t.double:.2f}, loop {t.seconds:.4f} s")
        return 0
    rows = tempo.table(sr, ratio)
    print(f"{sr} Hz / {ratio}: {rate:.3f} latent frames per second")
    print(f"{'k':>4} {'BPM':>9} {'double':>9} {'seconds':>9}")
    for t in rows:
        print(f"{t.k:>4} {t.bpm:>9.2f} {t.double:>9.2f} {t.seconds:>9.4f}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from unravel import pipeline
    # fail on bad inputs or outputs before loading the model
    pipeline.read_latents(args.latents)
    pipeline.decode_targets(args.latents, args.output, args.force)
    model = _load(args, args.model)
    _print_paths(pipeline.decode_files(model, args.latents, args.output, force=args.force))
    return 0


def cmd_bend(args: argparse.Namespace) -> int:
    from unravel.safewrite import check_target, check_writable_dir
    out = check_target(args.output, args.force)   # before the model is loaded
    check_writable_dir(out.parent if str(out.parent) else ".")
    from unravel.bend import Bender
    bender = Bender(_load(args, args.model, warmup=False))
    bender.bend(args.layer, args.op, args.amount, percent=args.percent, seed=args.seed)
    print(bender.save(out, force=args.force))
    return 0


def add_commands(sub, common: argparse.ArgumentParser, force: argparse.ArgumentParser,
                 device: argparse.ArgumentParser) -> None:
    """Add info, encode, stats, generate, tempo, decode and bend to the subparsers `sub`
    (`device` adds --device to encode, decode and bend)."""
    s = sub.add_parser("info", parents=[common, force],
                       help="show a model's contract, classes, attributes, layers and buffers")
    s.add_argument("model", metavar="MODEL", help=MODEL_HELP + ", or a folder of .ts models")
    s.add_argument("--json", action="store_true", help="print JSON (a list for a folder)")
    s.add_argument("--csv", metavar="FILE", help="also write the parameter and buffer table as CSV")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("encode", parents=[common, force, device], help="audio files or folders -> latents (.npy)")
    s.add_argument("--model", "-m", required=True, help=MODEL_HELP)
    s.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files or folders (scanned with their subfolders)")
    s.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: .)")
    s.add_argument("--latent-wav", action="store_true", help="also write <name>.latent.wav")
    from unravel.audio import AUDIO_EXTENSIONS
    s.add_argument("--extensions", nargs="+", default=list(AUDIO_EXTENSIONS), metavar="EXT",
                   help="file endings looked for in folders (default: %(default)s)")
    s.add_argument("--jobs", type=int_in(1, limits.MAX_JOBS), default=1, metavar="N",
                   help="encode in N worker processes (the same files as one; default 1)")
    s.set_defaults(func=cmd_encode)

    s = sub.add_parser("stats", parents=[common, force], help="per-dimension statistics of latents")
    s.add_argument("latents", nargs="+", metavar="LATENTS", help=".npy / latent .wav files or folders")
    s.add_argument("--iqr", action="store_true", help="add IQR centre, spread and bounds")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--plot", metavar="PNG", help="write a histogram per dimension")
    s.set_defaults(func=cmd_stats)

    from unravel.distributions import DISTRIBUTIONS
    from unravel.patterns import PATTERNS
    s = sub.add_parser("generate", parents=[common, force],
                       help="synthetic latents from the statistics of encodings, arranged in a pattern")
    s.add_argument("latents", nargs="+", metavar="LATENTS", help=".npy / latent .wav files or folders")
    s.add_argument("--pattern", choices=PATTERNS, default="default")
    s.add_argument("--dist", choices=DISTRIBUTIONS, default="normal")
    s.add_argument("--iqr", action="store_true", help="centre/spread from the quartiles")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--points", type=int_in(1, limits.MAX_LATENT_FRAMES), metavar="K", help="frames per block")
    g.add_argument("--bpm", type=float_in(0, 100_000, open_low=True), help="pick the block length whose tempo is nearest (default 120)")
    s.add_argument("--loops", type=int_in(1, limits.MAX_COUNT), default=1, metavar="N", help="repetitions (default 1)")
    s.add_argument("--files", type=int_in(1, limits.MAX_COUNT), default=1, metavar="N",
                   help="files to make, all from one random stream (default 1)")
    s.add_argument("--seed", type=int_in(0, limits.MAX_SEED), default=0, metavar="S")
    s.add_argument("--skip", type=int_in(0, limits.MAX_COUNT), default=0, metavar="I",
                   help="draw and drop the first I files of the stream (the sidecars use it)")
    s.add_argument("--plot", metavar="PNG",
                   help="also write violin, box and time-series plots of the generated files")
    _add_rate_args(s)
    s.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: .)")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("tempo", parents=[common], help="quantized loop tempos (k frames -> BPM)")
    _add_rate_args(s)
    s.add_argument("--bpm", type=float_in(0, 100_000, open_low=True), help="show the k nearest this tempo")
    s.set_defaults(func=cmd_tempo)

    s = sub.add_parser("decode", parents=[common, force, device], help="latents -> audio at the model's rate")
    s.add_argument("--model", "-m", required=True, help=MODEL_HELP)
    s.add_argument("latents", nargs="+", metavar="LATENTS", help=".npy / latent .wav files or folders")
    s.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: .)")
    s.set_defaults(func=cmd_decode)

    s = sub.add_parser("bend", parents=[common, force, device], help="bend a layer's weights, save a new model")
    s.add_argument("--model", "-m", required=True, help=MODEL_HELP)
    s.add_argument("--layer", required=True, help="layer name (see unravel info)")
    s.add_argument("--op", required=True, choices=("offset", "spread", "randomize", "invert", "zero"))
    s.add_argument("--amount", type=float_in(-1e6, 1e6), required=True)
    s.add_argument("--percent", type=float_in(0, 100, open_low=True), help="bend only this percent of the weights, evenly spaced")
    s.add_argument("--seed", type=int_in(0, limits.MAX_SEED), help="seed for randomize")
    s.add_argument("-o", "--output", required=True, metavar="OUT.ts", help="the bent model")
    s.set_defaults(func=cmd_bend)


def _add_rate_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", "-m", help="take the sample rate and ratio from this model")
    s.add_argument("--sr", type=int_in(1, limits.MAX_SR), default=44100, help="sample rate without --model (default 44100)")
    s.add_argument("--ratio", type=int_in(1, limits.MAX_RATIO), default=2048, help="frames ratio without --model (default 2048)")
