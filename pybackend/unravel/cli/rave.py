"""The model and latent commands: info, encode, stats, generate, tempo, decode, bend.

Each `cmd_*` calls the backend (unravel.model, pipeline, stats, generator, tempo, bend); the
backend is imported when the command runs, so `unravel --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from unravel.errors import UnravelError
from unravel.operations import (BEND, CHANNELS, DECODE, ENCODE, GENERATE, MODEL_HELP, MORPH, OUTPUT,
                                STATS, TEMPO)
from unravel.settings import epilog


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
    from unravel.modelinfo import info as model_info
    infos = [model_info(_load(args, spec, warmup=False)) for spec in specs]
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
    s = ENCODE.from_cli(args)
    out = s.output or "."
    # fail on bad inputs or outputs before loading the model
    pipeline.encode_targets(s.inputs, out, s.latent_wav, s.force, s.extensions)
    model = _load(args, s.model)
    pipeline.encode_files(model, s.inputs, out, latent_wav=s.latent_wav, force=s.force,
                          extensions=s.extensions, written=lambda p: print(p, flush=True),
                          jobs=s.jobs, latent_subtype=s.latent_subtype, resampler=s.resampler)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from unravel import plots, stats
    s = STATS.from_cli(args)
    r = stats.read(s.inputs, s.float32)
    if s.plot:
        plots.histograms(r.z, s.plot, title=r.title, force=s.force)
    if s.json:
        print(json.dumps(r.to_dict(s.iqr), indent=2))
    else:
        print(", ".join(str(p) for p in r.paths))
        print(stats.format_table(r.stats, s.iqr))
    if s.plot:
        print(f"plot: {s.plot}", file=sys.stderr if s.json else sys.stdout)
    return 0


def _sr_ratio(args: argparse.Namespace, s) -> tuple[int, int]:
    """The sample rate and ratio of --model, else --sr and --ratio."""
    if s.model:
        model = _load(args, s.model, warmup=False)
        if model.ratio is None:
            raise UnravelError(f"{model.path}: model does not say its ratio")
        return model.sr, model.ratio
    return s.sr, s.ratio


def cmd_generate(args: argparse.Namespace) -> int:
    from unravel import generator, patterns
    s = GENERATE.from_cli(args)
    sr, ratio = _sr_ratio(args, s)
    paths = generator.generate_files(s.replace(sr=sr, ratio=ratio))
    k, info = generator.resolve_points(s.points, s.bpm, sr, ratio)
    if info is not None and s.bpm is not None:
        print(f"{k} frames per block: {info['bpm']:.2f} BPM (target {info['target']:g}, "
              f"error {info['error']:+.2f})", file=sys.stderr)
    if s.pattern == "fibo" and k < patterns.FIBO_FULL_RUN:
        steps = patterns.fibonacci(k)
        print(f"fibo: {len(steps)} Fibonacci steps ({', '.join(map(str, steps))}) from {k} points; "
              f"a full run (as UnRAVEl's generator requires) needs {patterns.FIBO_FULL_RUN}",
              file=sys.stderr)
    for p in paths:
        _print_paths(generator.generated_outputs(p))
    if s.plot:
        print(s.plot)
    return 0


def cmd_tempo(args: argparse.Namespace) -> int:
    from unravel import tempo
    s = TEMPO.from_cli(args)
    sr, ratio = _sr_ratio(args, s)
    if s.k is not None:
        t = tempo.loop(s.k, sr, ratio)
        lines = [f"a loop of {t.k} frames: {t.bpm:.2f} BPM, double time {t.double:.2f}, "
                 f"loop {t.seconds:.4f} s"]
    elif s.bpm is not None:
        t, err = tempo.nearest(s.bpm, sr, ratio)
        lines = [f"nearest to {s.bpm:g} BPM: k = {t.k} frames, {t.bpm:.2f} BPM "
                 f"(error {err:+.2f}), double time {t.double:.2f}, loop {t.seconds:.4f} s"]
    elif s.table == "original":
        lines = [f"{'k':>4} {'BPM':>9} {'double':>9}"] + [
            f"{k:>4} {bpm:>9.2f} {'-' if double is None else f'{double:.2f}':>9}"
            for k, bpm, double in tempo.original_table(sr, ratio)]
    else:   # the table is checked (and may be refused) before anything is printed
        lines = [f"{'k':>4} {'BPM':>9} {'double':>9} {'seconds':>9}"] + [
            f"{t.k:>4} {t.bpm:>9.2f} {t.double:>9.2f} {t.seconds:>9.4f}" for t in tempo.table(sr, ratio)]
    print(f"{sr} Hz / {ratio}: {tempo.frame_rate(sr, ratio):.3f} latent frames per second")
    print("\n".join(lines))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from unravel import latents, pipeline
    s = DECODE.from_cli(args)
    out = s.output or "."
    # fail on bad inputs or outputs before loading the model
    latents.read_files(s.inputs)
    pipeline.decode_targets(s.inputs, out, s.force)
    model = _load(args, s.model)
    _print_paths(pipeline.decode_files(model, s.inputs, out, force=s.force, subtype=s.subtype))
    return 0


def _save_changed(args: argparse.Namespace, s, model: str, change) -> int:
    """The commands that change a model's weights and save it: the output is checked before
    the model is loaded; `change(bender)` returns what it did, said on stderr once saved."""
    from unravel.bend import Bender
    from unravel.safewrite import check_target, check_writable_dir
    out = check_target(s.output, s.force)
    check_writable_dir(out.parent if str(out.parent) else ".")
    bender = Bender(_load(args, model, warmup=False))
    said = change(bender)
    saved = bender.save(out, force=s.force)
    print(said, file=sys.stderr)
    print(saved)
    return 0


def cmd_bend(args: argparse.Namespace) -> int:
    s = BEND.from_cli(args)
    return _save_changed(args, s, s.model, lambda b: f"bend {s.layer} {s.op} {s.amount:g}: "
                         f"{b.bend(s.layer, s.op, s.amount, percent=s.percent, seed=s.seed)} weights")


def cmd_channels(args: argparse.Namespace) -> int:
    s = CHANNELS.from_cli(args)
    return _save_changed(args, s, s.model, lambda b: f"channels {s.layer} {s.op}: "
                         f"{b.channels(s.layer, s.op, s.amount, s.channels, s.percent, s.seed)} channels")


def cmd_morph(args: argparse.Namespace) -> int:
    from unravel.archive import resolve_model
    s = MORPH.from_cli(args)
    return _save_changed(args, s, s.a, lambda b: f"morph {s.t:g}: "
                         f"{b.morph(resolve_model(s.b), s.t, s.layers).summary()}")


def cmd_output(args: argparse.Namespace) -> int:
    s = OUTPUT.from_cli(args)
    values = [s.value, s.high] if s.op == "clamp" else [s.value]
    if (s.op == "clamp") != (s.high is not None):
        raise UnravelError("output: --high goes with --op clamp (and clamp needs it)")
    return _save_changed(args, s, s.model, lambda b: f"output {s.layer} {s.op} "
                         f"{' '.join(f'{v:g}' for v in values)}: {b.output(s.layer, s.op, values, warm=False)} calls")


def add_commands(sub, common: argparse.ArgumentParser, force: argparse.ArgumentParser,
                 device: argparse.ArgumentParser) -> None:
    """Add info, encode, stats, generate, tempo, decode, bend, channels, morph and output to
    the subparsers `sub` (`device` adds --device to encode, decode and the model changes)."""
    s = sub.add_parser("info", parents=[common, force],
                       help="show a model's contract, classes, attributes, layers and buffers",
                       **epilog(("unravel info default", "unravel info my_rave.ts --json",
                                 "unravel info models/ --csv models.csv")))
    s.add_argument("model", metavar="MODEL", help=MODEL_HELP + ", or a folder of .ts models")
    s.add_argument("--json", action="store_true", help="print JSON (a list for a folder)")
    s.add_argument("--csv", metavar="FILE", help="also write the parameter and buffer table as CSV")
    s.set_defaults(func=cmd_info)

    for spec, func, parents in ((ENCODE, cmd_encode, [common, device]), (STATS, cmd_stats, [common]),
                                (GENERATE, cmd_generate, [common]), (TEMPO, cmd_tempo, []),
                                (DECODE, cmd_decode, [common, device]), (BEND, cmd_bend, [common, device]),
                                (CHANNELS, cmd_channels, [common, device]),
                                (MORPH, cmd_morph, [common, device]),
                                (OUTPUT, cmd_output, [common, device])):
        s = sub.add_parser(**spec.parser_args(), parents=parents)
        spec.add_to(s)
        s.set_defaults(func=func)
