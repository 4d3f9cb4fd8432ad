"""argparse types that bound every number at parse time, so a number out of range is one
usage line (`unravel <command>: argument --seed: must be between 0 and ...`, status 2)."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in low..high."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def float_in(low: float = -math.inf, high: float = math.inf, open_low: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in low..high (above low when `open_low`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < low or value > high or (open_low and value == low):
            lo = f"above {low:g}" if open_low else f"at least {low:g}"
            if math.isinf(high):
                bounds = lo
            elif math.isinf(low):
                bounds = f"at most {high:g}"
            else:
                bounds = f"{lo} and at most {high:g}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value
    parse.__name__ = "float"
    return parse
