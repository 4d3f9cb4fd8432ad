"""The `app` command: serve the web page (unravel.app) until interrupted."""

from __future__ import annotations

import argparse

from unravel.errors import UnravelError
from unravel.operations import APP


def cmd_app(args: argparse.Namespace) -> int:
    """`unravel app`: serve the page until interrupted."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UnravelError("the web page needs gradio: pip install 'unravel[app]'") from None
    from unravel.app import serve
    s = APP.from_cli(args)
    serve(s.host, s.port, s.models and str(s.models), s.out and str(s.out), threads=args.threads,
          device=args.device, max_upload_mb=s.max_upload_mb)
    return 0


def add_commands(sub, common: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """Add app (with --device) to the subparsers `sub`."""
    s = sub.add_parser(**APP.parser_args(), parents=[common, device])
    APP.add_to(s)
    s.set_defaults(func=cmd_app)
