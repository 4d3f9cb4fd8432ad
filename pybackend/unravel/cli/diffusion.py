"""The latent diffusion commands: diffuse, prepare-diffusion, train-diffusion.

unravel.diffusion (and so torch) is imported only when one of them runs.
"""

from __future__ import annotations

import argparse
import sys

from unravel.errors import UnravelError
from unravel.operations import DIFFUSE, PREPARE, TRAIN


def _cli_model(args: argparse.Namespace, spec: str):
    from unravel.model import load_model
    return load_model(spec, threads=getattr(args, "threads", 1), device=args.device)


def cmd_diffuse(args: argparse.Namespace) -> int:
    """`unravel diffuse`: sample, decode, write wav (+ .npy) + .json per result."""
    s = DIFFUSE.from_cli(args)
    if s.seed is not None and s.lerp:
        raise UnravelError("--seed is for plain sampling; with --lerp give --seed-a and --seed-b")
    from unravel.diffusion import diffuse_files
    model = _cli_model(args, s.model)
    results = diffuse_files(model, s, s.output or ".", progress=sys.stderr.isatty(),
                            device=args.device)
    for r in results:
        print(r.wav)
        if r.npy:
            print(r.npy)
        if r.latent_wav:
            print(r.latent_wav)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """`unravel prepare-diffusion`: audio -> training latents."""
    from unravel.diffusion import prepare_files
    s = PREPARE.from_cli(args)
    model = _cli_model(args, s.model)
    paths = prepare_files(model, s, progress=sys.stderr.isatty())
    for p in paths:
        print(p)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`unravel train-diffusion`: train on a folder of latents."""
    from unravel.diffusion import train
    from unravel.model import set_threads
    s = TRAIN.from_cli(args)
    set_threads(getattr(args, "threads", 1))
    summary = train(s, progress=sys.stderr.isatty(), device=args.device)
    if summary["rank"] == 0:  # under torchrun, one process prints
        print(summary["best"])
        print(summary["last"])
    return 0


def add_commands(sub, common: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """Add diffuse, prepare-diffusion and train-diffusion (each with --device) to the
    subparsers `sub`."""
    for spec, func in ((DIFFUSE, cmd_diffuse), (PREPARE, cmd_prepare), (TRAIN, cmd_train)):
        s = sub.add_parser(**spec.parser_args(), parents=[common, device])
        spec.add_to(s)
        s.set_defaults(func=func)
