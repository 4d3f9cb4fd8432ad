"""`python3 tools/pdgen` / `python3 -m pdgen`: rewrite the generated patches in pd/."""

import pathlib
import sys

if not __package__:                      # run as a folder: make `pdgen` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import pdgen  # noqa: E402

for family in pdgen.FAMILIES:
    for fname, text in pdgen.patches(family).items():
        (pdgen.PD / fname).write_text(text)
        print("wrote", pdgen.PD / fname)
