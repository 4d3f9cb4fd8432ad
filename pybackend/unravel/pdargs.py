"""Pd message arguments (lists of str and float, Pd's symbols and floats) checked one by one,
and Python values turned back into Pd atoms. Every error is one UnravelError line naming the
message."""

from __future__ import annotations

import math
import os
import pathlib

import numpy as np

from unravel.errors import UnravelError

INT_LIMIT = 2 ** 31      # integers from Pd: |n| below this


def integer(cmd: str, v, what: str) -> int:
    if isinstance(v, str) or not math.isfinite(v) or float(v) != int(v) or abs(v) >= INT_LIMIT:
        raise UnravelError(f"{cmd}: {what} must be an integer below {INT_LIMIT} in size, got {v}")
    return int(v)


def number(cmd: str, v, what: str) -> float:
    if isinstance(v, str):
        raise UnravelError(f"{cmd}: {what} must be a number, got '{v}'")
    if not math.isfinite(v):
        raise UnravelError(f"{cmd}: {what} must be a finite number, got {v}")
    return float(v)


def symbol(cmd: str, v, what: str) -> str:
    if not isinstance(v, str):
        raise UnravelError(f"{cmd}: {what} must be a symbol, got {v:g}")
    return v


def count(cmd: str, args: list, lo: int, hi: int | None, usage: str) -> None:
    """UnravelError with the usage line unless lo <= len(args) <= hi (None: no limit)."""
    if len(args) < lo or (hi is not None and len(args) > hi):
        raise UnravelError(f"{cmd}: usage: {cmd} {usage}")


def path(p: str, base: str) -> pathlib.Path:
    """A path as typed in a patch: ~ expanded, relative ones against the patch folder."""
    q = pathlib.Path(os.path.expanduser(p))
    return q if q.is_absolute() or not base else pathlib.Path(base) / q


def atom(v) -> "float | str":
    """A reply value as a Pd atom: numbers (and one-element tensors) as float, the rest as str."""
    if isinstance(v, (bool, np.bool_, int, float, np.number)):
        return float(v)
    if hasattr(v, "numel") and v.numel() == 1:
        return float(v.item())
    return str(v)
