"""The Pd patch generators: pd/bender.pd, pd/chns0n.pd and its wrappers, their help
patches and pd/examples/*.pd, one module per patch family (bender, chns0n, help,
examples), all drawn with the Canvas writer of `canvas`.

`python3 tools/pdgen` (or `python3 -m pdgen` from tools/) rewrites the patches in pd/."""

from __future__ import annotations

import importlib
import pathlib

FAMILIES = ("bender", "chns0n", "help", "examples")   # the modules, in the order they are written
PD = pathlib.Path(__file__).resolve().parents[2] / "pd"


def patches(family: str) -> dict[str, str]:
    """{file name under pd/: patch text} of one family's module."""
    return importlib.import_module(f"{__name__}.{family}").patches()
