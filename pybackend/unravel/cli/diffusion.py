"""The latent diffusion commands: diffuse, prepare-diffusion, train-diffusion.

unravel.diffusion (and so torch) is imported only when one of them runs.
"""

from __future__ import annotations

import argparse
import sys

from unravel import limits
from unravel.cli.options import float_in, int_in
from unravel.cli.rave import MODEL_HELP
from unravel.errors import UnravelError


def _cli_model(args: argparse.Namespace, spec: str):
    from unravel.model import load_model
    return load_model(spec, threads=getattr(args, "threads", 1), device=args.device)


def cmd_diffuse(args: argparse.Namespace) -> int:
    """`unravel diffuse`: sample, decode, write wav (+ .npy) + .json per result."""
    if args.seed is not None and args.lerp:
        raise UnravelError("--seed is for plain sampling; with --lerp give --seed-a and --seed-b")
    from unravel.diffusion import diffuse_files
    model = _cli_model(args, args.model)
    results = diffuse_files(
        model, args.checkpoint, args.output, seed=args.seed, num=args.num, steps=args.steps,
        temperature=args.temperature, latent_scale=args.latent_scale,
        skip_normalize=args.skip_normalize, length_mult=args.length_mult, lerp=args.lerp,
        seed_a=args.seed_a, seed_b=args.seed_b, lerp_factor=args.lerp_factor,
        save_latents=args.save_latents, latent_wav=args.latent_wav, arch=args.arch, name=args.name, batch=args.batch,
        force=args.force, progress=sys.stderr.isatty(), latent_length=args.latent_length,
        device=args.device, sampler=args.sampler)
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
    model = _cli_model(args, args.model)
    paths = prepare_files(model, args.inputs, args.output, args.latent_length,
                          normalize_latents=not args.no_normalize, force=args.force,
                          progress=sys.stderr.isatty(), jobs=args.jobs)
    for p in paths:
        print(p)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`unravel train-diffusion`: train on a folder of latents."""
    from unravel.diffusion import train
    from unravel.model import set_threads
    set_threads(getattr(args, "threads", 1))
    summary = train(args.latents, args.output, arch=args.arch, name=args.name,
                    batch_size=args.batch_size, accumulation_steps=args.accumulation_steps,
                    lr=args.lr, weight_decay=args.weight_decay, scheduler_steps=args.scheduler_steps,
                    noise_std=args.noise_std, patience=args.patience, max_epochs=args.max_epochs,
                    max_minutes=args.max_minutes, split_ratio=args.split_ratio,
                    save_interval=args.save_interval, resume=args.resume, finetune=args.finetune,
                    seed=args.seed, force=args.force, optimizer_state=not args.no_optimizer_state,
                    progress=sys.stderr.isatty(), device=args.device, precision=args.precision)
    if summary["rank"] == 0:  # under torchrun, one process prints
        print(summary["best"])
        print(summary["last"])
    return 0


def add_commands(sub, common: argparse.ArgumentParser, force: argparse.ArgumentParser,
                 device: argparse.ArgumentParser) -> None:
    """Add diffuse, prepare-diffusion and train-diffusion (each with --device) to the
    subparsers `sub`."""
    s = sub.add_parser("diffuse", parents=[common, force, device],
                       help="sample latents from a diffusion checkpoint, decode them to audio")
    s.add_argument("--checkpoint", "-c", default="default",
                   help="diffusion checkpoint .pt ('default' = the bundled one)")
    s.add_argument("--model", "-m", default="default", help=MODEL_HELP)
    s.add_argument("--arch", metavar="ARCH",
                   help="architecture for checkpoints that do not store one: a preset (original, "
                        "flex-256 .. flex-16384, tiny, small, medium) or A.json (default: the "
                        "Flex'ed preset for its latent_length, else the original 4096 preset)")
    s.add_argument("--seed", type=int_in(0, limits.MAX_SEED), metavar="S", help="first seed (default: random)")
    s.add_argument("--num", type=int_in(1, limits.MAX_COUNT), default=1, metavar="N", help="files to make: seeds S, S+1, ...")
    s.add_argument("--steps", type=int_in(1, limits.MAX_STEPS), default=100, help="diffusion steps (default 100)")
    s.add_argument("--sampler", choices=("v", "dpm"), default="v",
                   help="v: the reference's sampler (default, same numbers as the reference for a seed); "
                        "dpm: DPM-Solver++(3M), closer to the converged result in 20 steps than v in 100")
    s.add_argument("--temperature", type=float_in(0, 1e3), default=1.0, help="noise scale (default 1.0)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--latent-scale", type=float_in(-1e3, 1e3), default=1.0,
                   help="scale after the global z-score (default 1.0)")
    g.add_argument("--skip-normalize", action="store_true", help="decode the latents as sampled")
    s.add_argument("--latent-length", type=int_in(1, limits.MAX_LATENT_FRAMES), metavar="L",
                   help="latent frames to sample (default: the checkpoint's; a multiple of its "
                        "network's downsampling)")
    s.add_argument("--length-mult", type=int_in(1, limits.MAX_LENGTH_MULT), default=1, metavar="K",
                   help="sample K times the latent length")
    s.add_argument("--lerp", action="store_true", help="slerp from seed A's to seed B's latents")
    s.add_argument("--seed-a", type=int_in(0, limits.MAX_SEED), metavar="A", help="seed A (with --lerp; default random)")
    s.add_argument("--seed-b", type=int_in(0, limits.MAX_SEED), metavar="B", help="seed B (with --lerp; default random)")
    s.add_argument("--lerp-factor", type=float_in(-1e3, 1e3), default=1.0,
                   help="interpolation reaches this factor at the end (default 1.0)")
    s.add_argument("--save-latents", action="store_true", help="also write the latents as .npy")
    s.add_argument("--latent-wav", action="store_true", help="also write <name>.latent.wav")
    s.add_argument("--name", default="diffuse", help="file name prefix (default diffuse)")
    s.add_argument("--batch", type=int_in(1, limits.MAX_BATCH), default=4, metavar="B",
                   help="seeds sampled together (default 4; 1 = bit-exact with the reference loop)")
    s.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: .)")
    s.set_defaults(func=cmd_diffuse)

    s = sub.add_parser("prepare-diffusion", parents=[common, force, device],
                       help="audio files or folders -> training latents for train-diffusion")
    s.add_argument("--model", "-m", default="default", help=MODEL_HELP)
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders")
    s.add_argument("--latent-length", type=int_in(1, limits.MAX_LATENT_FRAMES), default=256, metavar="L",
                   help="latent frames per chunk (default 256; chunks of L*ratio samples)")
    s.add_argument("--no-normalize", action="store_true", help="skip the per-chunk z-score")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="latent folder")
    s.add_argument("--jobs", type=int_in(1, limits.MAX_JOBS), default=1, metavar="N",
                   help="prepare in N worker processes (the same files as one; default 1)")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("train-diffusion", parents=[common, force, device],
                       help="train a latent diffusion model on a folder of latents")
    s.add_argument("latents", metavar="LATENT_DIR", help="folder of (1, D, L) .npy latents")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="checkpoint folder")
    s.add_argument("--arch", default="small",
                   help="tiny, small, medium, flex (the Flex'ed preset for the latent length) "
                        "or A.json (default small)")
    s.add_argument("--name", default="diffusion", help="checkpoint name prefix")
    s.add_argument("--batch-size", type=int_in(1, limits.MAX_BATCH), default=8)
    s.add_argument("--accumulation-steps", type=int_in(1, limits.MAX_COUNT), default=2)
    s.add_argument("--lr", type=float_in(0, 1e3, open_low=True), default=1e-4)
    s.add_argument("--weight-decay", type=float_in(0, 1e3), default=1e-4)
    s.add_argument("--scheduler-steps", type=int_in(1, limits.MAX_EPOCHS), default=100, help="epochs per LR decay (x0.99)")
    s.add_argument("--noise-std", type=float_in(0, 1e3), default=0.1, help="augmentation noise (default 0.1)")
    s.add_argument("--patience", type=int_in(1, limits.MAX_EPOCHS), default=200,
                   help="early stop after N epochs without improvement")
    s.add_argument("--max-epochs", type=int_in(1, limits.MAX_EPOCHS), default=25000)
    s.add_argument("--max-minutes", type=float_in(0, 1e7, open_low=True), help="stop after this many minutes")
    s.add_argument("--split-ratio", type=float_in(0, 1, open_low=True), default=0.8, help="training share of the latents")
    s.add_argument("--save-interval", type=int_in(1, limits.MAX_EPOCHS), default=100, help="write <name>_last.pt every N epochs")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--resume", metavar="CKPT", help="continue a run (weights, optimizer, epoch)")
    g.add_argument("--finetune", metavar="CKPT", help="start from a checkpoint's weights")
    s.add_argument("--seed", type=int_in(0, limits.MAX_SEED), default=664)
    s.add_argument("--no-optimizer-state", action="store_true",
                   help="write checkpoints without optimizer/scheduler state (smaller, not resumable)")
    s.add_argument("--precision", default="32", choices=("32", "16-mixed", "bf16-mixed"),
                   help="32-bit, or mixed precision with float16 (CUDA) or bfloat16 autocast (default 32)")
    s.set_defaults(func=cmd_train)
