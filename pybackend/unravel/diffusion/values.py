"""Checks of the values a diffusion call is given (Pd atoms, strings, numbers) and seeds."""

from __future__ import annotations

import math
import secrets

from unravel import limits
from unravel.errors import UnravelError


def check_seed(seed, name: str = "seed") -> int:
    """An integer seed in 0 .. 2**32-1 (what numpy accepts), else UnravelError."""
    value = as_int(seed, name)
    if not 0 <= value <= limits.MAX_SEED:
        raise UnravelError(f"{name} must be between 0 and {limits.MAX_SEED}, got {value}")
    return value


def random_seed() -> int:
    """A fresh seed (recorded in the sidecar, so the file can be made again)."""
    return secrets.randbelow(2**31)


def as_int(value, name: str) -> int:
    """int from an int, an integral float (Pd atoms) or a numeric string."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UnravelError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise UnravelError(f"{name} must be an integer, got {value!r}")
    return int(f)


def as_float(value, name: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UnravelError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise UnravelError(f"{name} must be finite, got {value!r}")
    return f


def as_bool(value, name: str) -> bool:
    if isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise UnravelError(f"{name} must be 0 or 1, got {value!r}")
    return bool(as_int(value, name))
