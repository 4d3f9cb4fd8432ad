"""`unravel app`: a local web page for latent diffusion, UnRAVEl composition and network bending.

One module per tab, each with its plain-Python functions over the backend (the page calls
them in-process, the tests call them without a browser) and its `layout`: `diffusion_tab`,
`unravel_tab`, `bending_tab`; `common` holds what they share. `build` assembles the page,
`serve` starts it. Gradio is imported only inside the layouts and `serve`, so this package
loads without the `[app]` extra.
"""

from __future__ import annotations

import os

# Nothing on the page may phone home: no analytics, no Hugging Face hub look-ups.
for _key, _value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}.items():
    os.environ.setdefault(_key, _value)

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from unravel import audio, limits, safewrite  # noqa: E402,F401 - audio: part of this module's API
from unravel.app import bending_tab, diffusion_tab, unravel_tab  # noqa: E402
from unravel.app.bending_tab import (SLIDERS, BendResult, _pick_layer,  # noqa: E402,F401
                                     bend_apply, bend_command, bend_generate, bend_layers,
                                     channels_generate, morph_generate,
                                     bend_listen, bend_restore, bend_save, bend_settings,
                                     layer_info)
from unravel.app.common import (BUNDLED_LOOP, CHECKPOINT_SUFFIXES, CSS, DATA,  # noqa: E402,F401
                                Library, _on_page, fresh_dir, random_seed, theme, whole)
from unravel.app.diffusion_tab import (DiffusionResult, diffusion_command,  # noqa: E402,F401
                                       diffusion_generate)
from unravel.app.unravel_tab import ComposeResult, EncodeResult, compose, encode_audio  # noqa: E402,F401
from unravel.errors import UnravelError  # noqa: E402


def build(library: Library, out_dir: str | os.PathLike,
          max_upload_mb: float = limits.DEFAULT_MAX_UPLOAD_MB):
    """The gradio page: Diffusion, UnRAVEl and Bending tabs over `library`, writing to `out_dir`
    (uploads up to `max_upload_mb` MB of decoded audio per file)."""
    import gradio as gr

    out_dir = Path(out_dir)
    rave_choices = library.rave_choices()
    rave_default = rave_choices[0][1] if rave_choices else "default"
    with gr.Blocks(title="unravel", analytics_enabled=False) as page:
        gr.Markdown("## unravel — generate, compose and bend sound in the latent space of RAVE models")
        with gr.Tabs():
            diffusion_tab.layout(library, out_dir, rave_choices, rave_default)
            unravel_tab.layout(library, out_dir, rave_choices, rave_default, max_upload_mb)
            bending_tab.layout(library, out_dir, rave_choices, rave_default, max_upload_mb)
    return page


def serve(host: str = "127.0.0.1", port: int = 7860, models: str | os.PathLike | None = None,
          out: str | os.PathLike | None = None, block: bool = True, threads: int = 1,
          device: str = "cpu", max_upload_mb: float = limits.DEFAULT_MAX_UPLOAD_MB):
    """Start the page on http://host:port; `block=False` returns (gradio app, local url).
    Its models and diffusion run on `device` (see unravel.device). Custom model and
    checkpoint paths must lie in `models`; an upload may hold at most `max_upload_mb` MB of
    decoded audio (larger files are refused by gradio as they arrive)."""
    from unravel.device import name, resolve
    from unravel.model import set_threads
    set_threads(threads)
    device = name(resolve(device))  # an absent device fails here, before the page starts
    models = Path(models) if models else None
    if models is not None and not models.is_dir():
        raise UnravelError(f"{models}: models folder not found")
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="unravel-app-"))
    safewrite.check_writable_dir(out)
    if not 1 <= int(port) <= 65535:
        raise UnravelError(f"port must be between 1 and 65535, got {port}")
    if not 0 < max_upload_mb <= 1e6:
        raise UnravelError(f"max upload must be between 0 and 1000000 MB, got {max_upload_mb}")
    page = build(Library(models, device), out, max_upload_mb)
    page.queue(default_concurrency_limit=1)
    allowed = [str(out), str(DATA)] + ([str(models)] if models else [])
    try:
        app, url, _ = page.launch(server_name=host, server_port=int(port), share=False,
                                  inbrowser=False, ssr_mode=False, mcp_server=False, pwa=False,
                                  enable_monitoring=False, show_error=True, quiet=True,
                                  allowed_paths=allowed, theme=theme(), css=CSS,
                                  max_file_size=int(max_upload_mb * 2**20),
                                  footer_links=["settings"], prevent_thread_lock=True)
    except OSError:
        raise UnravelError(f"cannot listen on {host}:{port} (in use or not allowed: choose "
                           f"another with --port)") from None
    print(f"unravel app: http://{host}:{port}/  (outputs in {out})", flush=True)
    if not block:
        return page, url
    try:
        page.block_thread()
    finally:
        page.close()
