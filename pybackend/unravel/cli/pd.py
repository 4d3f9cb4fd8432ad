"""`unravel pd-install`: install the Pd library for this Python (unravel.pdinstall)."""

from __future__ import annotations

import argparse
from pathlib import Path

from unravel.settings import epilog


def cmd_pd_install(args: argparse.Namespace) -> int:
    from unravel import pdinstall
    target = pdinstall.install(Path(args.dir) if args.dir else None, force=args.force,
                               config_only=args.config_only)
    print(pdinstall.usage(target))
    return 0


def add_commands(sub, common: argparse.ArgumentParser, force: argparse.ArgumentParser) -> None:
    """pd-install."""
    s = sub.add_parser("pd-install", parents=[force],
                       help="build the Pd library (unravel~, abstractions, help, examples) for this "
                            "Python and install it as DIR/unravel",
                       **epilog(("unravel pd-install", "unravel pd-install ~/pd-externals --force",
                                 "unravel pd-install --config-only ~/pd-externals   # after a deken install")))
    s.add_argument("dir", nargs="?", metavar="DIR",
                   help="a Pd externals folder (default: ~/pd-externals, or ~/Library/Pd on macOS)")
    s.add_argument("--config-only", action="store_true",
                   help="only point DIR/unravel, or DIR itself when it is the library folder "
                        "(e.g. installed by deken), at this Python")
    s.set_defaults(func=cmd_pd_install)
