"""Morphing between two models: every layer whose name and shape match in both becomes
(1 - t)·A + t·B, computed in float32 from A's original weights, so that t can move at
control rate and `restore` brings A back bit for bit (see `bend.Bender.morph`).

Musically this is useful between two models fine-tuned from one base: their layers still
mean the same things. Between unrelated models the mixture is mostly noise.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

import torch

from unravel import modelcache


@dataclass(frozen=True)
class Match:
    """The layers two models share (name and shape) and the ones they don't, with why."""
    layers: list[str]
    unmatched: dict[str, str]    # layer -> "only in A", "only in B" or "A 16x8x3, B 32x8x3"

    def summary(self, limit: int = 3) -> str:
        """`<n> layers matched, <m> did not (name: why, ...)`."""
        text = f"{len(self.layers)} layers matched, {len(self.unmatched)} did not"
        if self.unmatched:
            shown = [f"{k}: {v}" for k, v in list(self.unmatched.items())[:limit]]
            more = len(self.unmatched) - limit
            text += " (" + "; ".join(shown) + (f"; {more} more" if more > 0 else "") + ")"
        return text


def weights(path: os.PathLike) -> dict[str, torch.Tensor]:
    """Every parameter of the TorchScript model at `path`, on the CPU (the file read once)."""
    module = modelcache.read_module(pathlib.Path(path), torch.device("cpu"))
    return {k: v.detach() for k, v in module.named_parameters()}


def match(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str = "") -> Match:
    """The layers of A (names starting with `prefix`) that B has with the same shape."""
    names, unmatched = [], {}
    for k, v in a.items():
        if not k.startswith(prefix):
            continue
        if k not in b:
            unmatched[k] = "only in A"
        elif b[k].shape != v.shape:
            unmatched[k] = f"A {'x'.join(map(str, v.shape))}, B {'x'.join(map(str, b[k].shape))}"
        else:
            names.append(k)
    for k in b:
        if k.startswith(prefix) and k not in a:
            unmatched[k] = "only in B"
    return Match(names, unmatched)


def mix(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """(1 - t)·a + t·b in a's dtype: a itself at t = 0 and b itself at t = 1."""
    b = b.to(a.device, a.dtype)
    return a * (1.0 - t) + b * t
