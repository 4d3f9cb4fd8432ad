"""nn~'s buffer size rule: powers of two, whole blocks of a method (`MethodParams.block`)."""

from __future__ import annotations


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
