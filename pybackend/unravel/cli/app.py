"""The `app` command: serve the web page (unravel.app) until interrupted."""

from __future__ import annotations

import argparse

from unravel import limits
from unravel.cli.options import float_in, int_in
from unravel.errors import UnravelError


def cmd_app(args: argparse.Namespace) -> int:
    """`unravel app`: serve the page until interrupted."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UnravelError("the web page needs gradio: pip install 'unravel[app]'") from None
    from unravel.app import serve
    serve(args.host, args.port, args.models, args.out, threads=args.threads,
          device=args.device, max_upload_mb=args.max_upload_mb)
    return 0


def add_commands(sub, common: argparse.ArgumentParser, device: argparse.ArgumentParser) -> None:
    """Add app (with --device) to the subparsers `sub`."""
    s = sub.add_parser("app", parents=[common, device], help="start the web page (needs the [app] extra)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int_in(limits.MIN_PORT, limits.MAX_PORT), default=7860, help="port (default 7860)")
    s.add_argument("--models", metavar="DIR", help="folder of RAVE .ts models and diffusion checkpoints")
    s.add_argument("--out", metavar="DIR", help="folder for what the page makes (default: a new temp folder)")
    s.add_argument("--max-upload-mb", type=float_in(0, 1e6, open_low=True), default=limits.DEFAULT_MAX_UPLOAD_MB,
                   metavar="MB", help="largest upload, in MB of decoded audio (default 300)")
    s.set_defaults(func=cmd_app)
