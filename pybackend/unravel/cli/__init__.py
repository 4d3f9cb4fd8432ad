"""The `unravel` command line: the argument parser and main(); the commands are in one
module per group (`rave`: info, encode, stats, generate, tempo, decode, bend; `diffusion`:
diffuse, prepare-diffusion, train-diffusion; `app`: app; `pd`: pd-install), each calling the backend only.

User errors print one line `unravel <command>: <file>: <cause>` on stderr and exit with
status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from unravel.cli import app, diffusion, pd, rave
from unravel.operations import THREADS
from unravel.errors import UnravelError, out_of_memory, silence_warnings


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (`unravel <command>: <message>`, status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The whole `unravel` argument parser (every subcommand sets `func(args) -> int`)."""
    from unravel import __version__

    # --threads and --force are accepted before or after the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=THREADS.argtype(), default=argparse.SUPPRESS,
                        metavar=THREADS.metavar, help=THREADS.help)
    force = argparse.ArgumentParser(add_help=False)
    force.add_argument("-f", "--force", action="store_true", help="overwrite existing output files")
    # --device on the commands that run a model (unravel.device names the choices)
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", default="auto", metavar="DEV",
                        help="where torch runs: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N "
                             "or mps (default auto)")

    p = _Parser(prog="unravel",
                description="Compose, generate and bend sound in the latent space of RAVE models.")
    # its own action: the subcommands' copy (shared from `common`) must keep SUPPRESS
    p.add_argument("--threads", type=THREADS.argtype(), default=THREADS.default,
                   metavar=THREADS.metavar, help=THREADS.help)
    p.add_argument("--version", action="version", version=f"unravel {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    rave.add_commands(sub, common, force, device)
    diffusion.add_commands(sub, common, device)
    app.add_commands(sub, common, device)
    pd.add_commands(sub, common, force)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and as a script exits with) the status."""
    silence_warnings()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:   # a usage error (its line already printed), --help, --version
        return e.code if isinstance(e.code, int) else 2
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
    except (MemoryError, RuntimeError) as e:    # an estimate that was too low: still one line
        if not out_of_memory(e):
            raise
        print(f"unravel {args.command}: out of memory", file=sys.stderr)
        return 2

