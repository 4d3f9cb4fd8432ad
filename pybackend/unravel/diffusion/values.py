"""Seeds of a diffusion run: a seed checked against numpy's range, and a fresh one."""

from __future__ import annotations

import secrets

from unravel import limits


def check_seed(seed: int, name: str = "seed") -> int:
    """`seed` if it is in 0 .. MAX_SEED (what numpy accepts: seed + i of the i-th result
    may pass it), else UnravelError."""
    return int(limits.check_range(seed, 0, limits.MAX_SEED, name))


def random_seed() -> int:
    """A fresh seed (recorded in the sidecar, so the file can be made again)."""
    return secrets.randbelow(2**31)
