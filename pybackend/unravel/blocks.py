"""Block arithmetic of a model's method: the smallest block it runs, and nn~'s buffer size rule.

A method with ratios (in_ratio, out_ratio) takes one input value per `in_ratio` samples and
gives one output value per `out_ratio` samples (nn~'s `<method>_params`).
"""

from __future__ import annotations

import math


def method_block(in_ratio: int, out_ratio: int, model_ratio: int | None = None) -> int:
    """The smallest block (samples) a method runs without padding: whole frames of both
    sides, and whole latent frames (`model_ratio`) for audio-to-audio methods such as forward."""
    if in_ratio == out_ratio == 1 and model_ratio:
        return int(model_ratio)
    return math.lcm(in_ratio, out_ratio)


def input_step(in_ratio: int, out_ratio: int, model_ratio: int | None = None) -> int:
    """The method's input length granularity: method_block in input values."""
    return max(1, method_block(in_ratio, out_ratio, model_ratio) // in_ratio)


def pow2ceil(n: int) -> int:
    """The smallest power of two >= n."""
    b = 1
    while b < n:
        b *= 2
    return b


def fit_bufsize(n: int, ratio: int) -> int:
    """nn~'s rule for a buffer size: the next power of two, at least `ratio` (and a multiple
    of it: a ratio that is not a power of two gives itself)."""
    b = max(pow2ceil(n), pow2ceil(ratio))
    return b if b % ratio == 0 else ratio
