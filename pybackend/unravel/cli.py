"""The `unravel` command line: a thin layer over unravel.pipeline, unravel.model and unravel.bend.

User errors print one line `unravel <command>: <file>: <cause>` on stderr and exit with
status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from unravel.errors import UnravelError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (`unravel <command>: <message>`, status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _load(args: argparse.Namespace, spec: str, warmup: bool = True):
    from unravel.model import load_model
    return load_model(spec, threads=args.threads, warmup=warmup)


def _print_paths(paths: Sequence[Path]) -> None:
    for p in paths:
        print(p)


# --------------------------------------------------------------------------- commands


def cmd_info(args: argparse.Namespace) -> int:
    info = _load(args, args.model, warmup=False).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model        {info['path']}")
    print(f"sample rate  {info['sr']} Hz")
    print(f"latent dims  {info['latent_dims']}")
    print(f"ratio        {info['ratio']}")
    print(f"channels     {info['in_channels']} in, {info['out_channels']} out")
    print("methods      " + ", ".join(
        f"{m} [{p['in_channels']}, {p['in_ratio']}, {p['out_channels']}, {p['out_ratio']}]"
        for m, p in info["methods"].items()))
    attrs = info["attributes"]
    print("attributes   " + (", ".join(f"{a} = {v}" for a, v in attrs.items()) or "(none)"))
    print(f"parameters   {info['parameters']}")
    print(f"layers       {len(info['layers'])}")
    width = max((len(layer["name"]) for layer in info["layers"]), default=4)
    for layer in info["layers"]:
        shape = "x".join(str(s) for s in layer["shape"]) or "scalar"
        fixed = "" if layer["learned"] else "  (fixed, not learned)"
        print(f"  {layer['name']:<{width}}  {shape:<16} {layer['numel']:>10}{fixed}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from unravel import pipeline
    # fail on bad inputs or outputs before loading the model
    pipeline.encode_targets(args.inputs, args.output, args.latent_wav, args.force)
    model = _load(args, args.model)
    _print_paths(pipeline.encode_files(model, args.inputs, args.output, latent_wav=args.latent_wav,
                                       force=args.force))
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
    from unravel import pipeline
    sr, ratio = _sr_ratio(args)
    paths = pipeline.generate_files(args.latents, args.output, pattern=args.pattern, dist=args.dist,
                                    iqr=args.iqr, points=args.points, bpm=args.bpm, loops=args.loops,
                                    files=args.files, seed=args.seed, sr=sr, ratio=ratio)
    if args.bpm is not None:
        k, info = pipeline.resolve_points(None, args.bpm, sr, ratio)
        print(f"{k} frames per block: {info['bpm']:.2f} BPM (target {info['target']:g}, "
              f"error {info['error']:+.2f})", file=sys.stderr)
    _print_paths(paths)
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
    from unravel.audio import check_writable_dir
    out = Path(args.output)
    if out.exists() and not args.force:
        raise UnravelError(f"{out}: already exists (use --force to overwrite)")
    check_writable_dir(out.parent if str(out.parent) else ".")
    from unravel.bend import Bender
    bender = Bender(_load(args, args.model, warmup=False))
    bender.bend(args.layer, args.op, args.amount, percent=args.percent, seed=args.seed)
    print(bender.save(out))
    return 0


def cmd_pd_install(args: argparse.Namespace) -> int:
    from unravel import pdinstall
    target = pdinstall.install(Path(args.dir) if args.dir else None, force=args.force,
                               config_only=args.config_only)
    print(pdinstall.usage(target))
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The whole `unravel` argument parser (every subcommand sets `func(args) -> int`)."""
    from unravel import __version__

    # --threads and --force are accepted before or after the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=argparse.SUPPRESS, metavar="N",
                        help="torch threads (default 1: fastest for small models on few cores)")
    force = argparse.ArgumentParser(add_help=False)
    force.add_argument("-f", "--force", action="store_true", help="overwrite existing output files")

    p = _Parser(prog="unravel",
                description="Compose, generate and bend sound in the latent space of RAVE models.")
    # its own action: the subcommands' copy (shared from `common`) must keep SUPPRESS
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads (default 1: fastest for small models on few cores)")
    p.add_argument("--version", action="version", version=f"unravel {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    model_help = "TorchScript model file ('default' = the bundled model)"

    s = sub.add_parser("info", parents=[common], help="show a model's contract, attributes and layers")
    s.add_argument("model", metavar="MODEL", help=model_help)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("encode", parents=[common, force], help="audio files or folders -> latents (.npy)")
    s.add_argument("--model", "-m", required=True, help=model_help)
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders")
    s.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: .)")
    s.add_argument("--latent-wav", action="store_true", help="also write <name>.latent.wav")
    s.set_defaults(func=cmd_encode)

    s = sub.add_parser("stats", parents=[common, force], help="per-dimension statistics of latents")
    s.add_argument("latents", nargs="+", metavar="LATENTS", help=".npy / latent .wav files or folders")
    s.add_argument("--iqr", action="store_true", help="add IQR centre, spread and bounds")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--plot", metavar="PNG", help="write a histogram per dimension")
    s.set_defaults(func=cmd_stats)

    from unravel.distributions import DISTRIBUTIONS
    from unravel.patterns import PATTERNS
    s = sub.add_parser("generate", parents=[common],
                       help="synthetic latents from the statistics of encodings, arranged in a pattern")
    s.add_argument("latents", nargs="+", metavar="LATENTS", help=".npy / latent .wav files or folders")
    s.add_argument("--pattern", choices=PATTERNS, default="default")
    s.add_argument("--dist", choices=DISTRIBUTIONS, default="normal")
    s.add_argument("--iqr", action="store_true", help="centre/spread from the quartiles")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--points", type=int, metavar="K", help="frames per block")
    g.add_argument("--bpm", type=float, help="pick the block length whose tempo is nearest (default 120)")
    s.add_argument("--loops", type=int, default=1, metavar="N", help="repetitions (default 1)")
    s.add_argument("--files", type=int, default=1, metavar="N", help="files to make (seeds S, S+1, ...)")
    s.add_argument("--seed", type=int, default=0, metavar="S")
    _add_rate_args(s)
    s.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: .)")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("tempo", parents=[common], help="quantized loop tempos (k frames -> BPM)")
    _add_rate_args(s)
    s.add_argument("--bpm", type=float, help="show the k nearest this tempo")
    s.set_defaults(func=cmd_tempo)

    s = sub.add_parser("decode", parents=[common, force], help="latents -> audio at the model's rate")
    s.add_argument("--model", "-m", required=True, help=model_help)
    s.add_argument("latents", nargs="+", metavar="LATENTS", help=".npy / latent .wav files or folders")
    s.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: .)")
    s.set_defaults(func=cmd_decode)

    s = sub.add_parser("bend", parents=[common, force], help="bend a layer's weights, save a new model")
    s.add_argument("--model", "-m", required=True, help=model_help)
    s.add_argument("--layer", required=True, help="layer name (see unravel info)")
    s.add_argument("--op", required=True, choices=("offset", "spread", "randomize", "invert", "zero"))
    s.add_argument("--amount", type=float, required=True)
    s.add_argument("--percent", type=float, help="bend only this percent of the weights, evenly spaced")
    s.add_argument("--seed", type=int, help="seed for randomize")
    s.add_argument("-o", "--output", required=True, metavar="OUT.ts", help="the bent model")
    s.set_defaults(func=cmd_bend)

    # ---- more subcommands go here --------------------------------------------------------
    # Helper "diffusion" adds `diffuse`, `prepare-diffusion` and `train-diffusion` below this
    # line: s = sub.add_parser(..., parents=[common] or [common, force]); s.set_defaults(func=...).
    # Raise UnravelError for user errors; main() prints it and exits with status 2.
    def diffusion_cmd(name: str):
        def run(args: argparse.Namespace) -> int:
            from unravel import diffusion  # imports torch: only when the command runs
            return getattr(diffusion, name)(args)
        return run

    s = sub.add_parser("diffuse", parents=[common, force],
                       help="sample latents from a diffusion checkpoint, decode them to audio")
    s.add_argument("--checkpoint", "-c", default="default",
                   help="diffusion checkpoint .pt ('default' = the bundled one)")
    s.add_argument("--model", "-m", default="default", help=model_help)
    s.add_argument("--arch", metavar="A.json",
                   help="architecture for checkpoints that do not store one (default: the Flex'ed "
                        "preset for its latent_length, else the original 4096 preset)")
    s.add_argument("--seed", type=int, metavar="S", help="first seed (default: random)")
    s.add_argument("--num", type=int, default=1, metavar="N", help="files to make: seeds S, S+1, ...")
    s.add_argument("--steps", type=int, default=100, help="diffusion steps (default 100)")
    s.add_argument("--temperature", type=float, default=1.0, help="noise scale (default 1.0)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--latent-scale", type=float, default=1.0,
                   help="scale after the global z-score (default 1.0)")
    g.add_argument("--skip-normalize", action="store_true", help="decode the latents as sampled")
    s.add_argument("--length-mult", type=int, default=1, metavar="K",
                   help="sample K times the checkpoint's latent length")
    s.add_argument("--lerp", action="store_true", help="slerp from seed A's to seed B's latents")
    s.add_argument("--seed-a", type=int, metavar="A", help="seed A (with --lerp; default random)")
    s.add_argument("--seed-b", type=int, metavar="B", help="seed B (with --lerp; default random)")
    s.add_argument("--lerp-factor", type=float, default=1.0,
                   help="interpolation reaches this factor at the end (default 1.0)")
    s.add_argument("--save-latents", action="store_true", help="also write the latents as .npy")
    s.add_argument("--latent-wav", action="store_true", help="also write <name>.latent.wav")
    s.add_argument("--name", default="diffuse", help="file name prefix (default diffuse)")
    s.add_argument("--batch", type=int, default=4, metavar="B",
                   help="seeds sampled together (default 4; 1 = bit-exact with the reference loop)")
    s.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: .)")
    s.set_defaults(func=diffusion_cmd("cmd_diffuse"))

    s = sub.add_parser("prepare-diffusion", parents=[common, force],
                       help="audio files or folders -> training latents for train-diffusion")
    s.add_argument("--model", "-m", default="default", help=model_help)
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders")
    s.add_argument("--latent-length", type=int, default=256, metavar="L",
                   help="latent frames per chunk (default 256; chunks of L*ratio samples)")
    s.add_argument("--no-normalize", action="store_true", help="skip the per-chunk z-score")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="latent folder")
    s.set_defaults(func=diffusion_cmd("cmd_prepare"))

    s = sub.add_parser("train-diffusion", parents=[common, force],
                       help="train a latent diffusion model on a folder of latents")
    s.add_argument("latents", metavar="LATENT_DIR", help="folder of (1, D, L) .npy latents")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="checkpoint folder")
    s.add_argument("--arch", default="small",
                   help="tiny, small, medium, flex (the Flex'ed preset for the latent length) "
                        "or A.json (default small)")
    s.add_argument("--name", default="diffusion", help="checkpoint name prefix")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--accumulation-steps", type=int, default=2)
    s.add_argument("--lr", type=float, default=1e-4)
    s.add_argument("--weight-decay", type=float, default=1e-4)
    s.add_argument("--scheduler-steps", type=int, default=100, help="epochs per LR decay (x0.99)")
    s.add_argument("--noise-std", type=float, default=0.1, help="augmentation noise (default 0.1)")
    s.add_argument("--patience", type=int, default=200,
                   help="early stop after N epochs without improvement")
    s.add_argument("--max-epochs", type=int, default=25000)
    s.add_argument("--max-minutes", type=float, help="stop after this many minutes")
    s.add_argument("--split-ratio", type=float, default=0.8, help="training share of the latents")
    s.add_argument("--save-interval", type=int, default=100, help="write <name>_last.pt every N epochs")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--resume", metavar="CKPT", help="continue a run (weights, optimizer, epoch)")
    g.add_argument("--finetune", metavar="CKPT", help="start from a checkpoint's weights")
    s.add_argument("--seed", type=int, default=664)
    s.add_argument("--no-optimizer-state", action="store_true",
                   help="write checkpoints without optimizer/scheduler state (smaller, not resumable)")
    s.set_defaults(func=diffusion_cmd("cmd_train"))

    s = sub.add_parser("app", parents=[common], help="start the web page (needs the [app] extra)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    s.add_argument("--models", metavar="DIR", help="folder of RAVE .ts models and diffusion checkpoints")
    s.add_argument("--out", metavar="DIR", help="folder for what the page makes (default: a new temp folder)")
    s.set_defaults(func=lambda args: __import__("unravel.app", fromlist=["cmd_app"]).cmd_app(args))

    s = sub.add_parser("pd-install", parents=[common, force],
                       help="build the Pd library (unravel~, abstractions, help, examples) for this "
                            "Python and install it as DIR/unravel")
    s.add_argument("dir", nargs="?", metavar="DIR",
                   help="a Pd externals folder (default: ~/Documents/Pd/externals if it exists, "
                        "else ~/pd-externals)")
    s.add_argument("--config-only", action="store_true",
                   help="only point DIR/unravel (e.g. installed by deken) at this Python")
    s.set_defaults(func=cmd_pd_install)
    # ---- end of subcommands ----------------------------------------------------------------

    return p


def _add_rate_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", "-m", help="take the sample rate and ratio from this model")
    s.add_argument("--sr", type=int, default=44100, help="sample rate without --model (default 44100)")
    s.add_argument("--ratio", type=int, default=2048, help="frames ratio without --model (default 2048)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and as a script exits with) the status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UnravelError as e:
        msg = " ".join(str(e).split())
        msg = msg.removeprefix(f"{args.command}: ")    # backend messages may name the step too
        print(f"unravel {args.command}: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"unravel {args.command}: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unravel {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
