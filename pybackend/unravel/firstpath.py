"""The first path: what a live [unravel~] plays from Pd's start until its own runner takes over.

Importing torch takes about a second; libtorch alone loads and runs a model in a third of
that. So while the bridge imports torch, native/firstpath.c runs the object's method through
libtorch alone (native/firstpath_torch.cpp), and the runner the `load` makes takes over at a
block boundary, as after any `load`. This module decides, without importing torch, whether a
model can go that way, with which shape, and where torch's C++ libraries are."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import sys

from unravel import archive, blocks
from unravel.errors import UnravelError
from unravel.methods import latent_ratio

LIBRARY = {"linux": "libtorch_cpu.so", "darwin": "libtorch_cpu.dylib"}


def torch_lib() -> tuple[str, str] | None:
    """(the folder of torch's C++ libraries, torch's version) for the torch this Python would
    import, found without importing it; None when there is none."""
    lib = LIBRARY.get(sys.platform)
    spec = importlib.util.find_spec("torch")
    if lib is None or spec is None or not spec.submodule_search_locations:
        return None
    root = pathlib.Path(list(spec.submodule_search_locations)[0])
    try:
        version = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""",
                            (root / "version.py").read_text(), re.M)
    except OSError:
        return None
    if version is None or not (root / "lib" / lib).is_file():
        return None
    return str(root / "lib"), version.group(1)


def plan(spec: str, method: str, bufsize: int) -> tuple | None:
    """How model `spec` plays `method` (forward when it lacks it, as the runner falls back)
    at `bufsize` before torch is imported: (path, method, in_chans, in_ratio, out_chans,
    out_ratio, bufsize, torch's library folder, torch's version), the buffer size fitted as
    the runner fits it; None when it cannot (no bufsize: inline mode; a file that declares no
    methods; no torch), or when UNRAVEL_FIRSTPATH is 0."""
    if os.environ.get("UNRAVEL_FIRSTPATH", "1") == "0" or bufsize <= 0:
        return None
    try:
        path = archive.resolve_model(spec)
    except UnravelError:
        return None
    params = archive.method_params(path)
    if method not in params:
        method = "forward"
    mp = params.get(method)
    found = torch_lib()
    if mp is None or found is None:
        return None
    bufsize = blocks.fit_bufsize(bufsize, mp.block(latent_ratio(params)))
    return (str(path), method, mp.in_channels, mp.in_ratio, mp.out_channels, mp.out_ratio,
            bufsize, *found)
