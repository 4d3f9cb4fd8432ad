"""`.venv/bin/python tools/pdgen`: rewrite the generated patches in pd/ (the job options come
from unravel.operations, so it runs with the project's Python)."""

import pathlib
import sys

if not __package__:                      # run as a folder: make `pdgen` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
# the job options come from unravel.operations: run with the project's Python (.venv/bin/python)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "pybackend"))

import pdgen  # noqa: E402

for family in pdgen.FAMILIES:
    for fname, text in pdgen.patches(family).items():
        (pdgen.PD / fname).write_text(text)
        print("wrote", pdgen.PD / fname)
