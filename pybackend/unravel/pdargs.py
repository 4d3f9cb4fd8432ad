"""Pd message arguments (lists of str and float, Pd's symbols and floats) checked one by one
(numbers as an option of `unravel.settings` is), and Python values turned back into Pd atoms.
Every error is one UnravelError line naming the message."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from unravel.errors import UnravelError
from unravel.settings import Option

INT_LIMIT = 2 ** 31      # integers from Pd: |n| below this


def value(cmd: str, v, option: Option):
    """`v` checked as `option` (see `Option.convert`); a Pd symbol is not a number."""
    if option.kind in ("int", "float") and isinstance(v, str):
        raise UnravelError(f"{cmd}: {option.name} must be a number, got '{v}'")
    try:
        return option.convert(v)
    except ValueError as e:
        raise UnravelError(f"{cmd}: {option.name} {e}") from None


def integer(cmd: str, v, what: str) -> int:
    return value(cmd, v, Option(what, "int", low=1 - INT_LIMIT, high=INT_LIMIT - 1))


def number(cmd: str, v, what: str) -> float:
    return value(cmd, v, Option(what, "float"))


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
