"""The methods of an nn~-contract model: what each declares in its `<method>_params` buffer
(`MethodParams`), the bounds on those values and their check, and their discovery in a loaded
TorchScript module. Imports no torch (`archive` uses it before torch is imported)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from unravel.errors import UnravelError
from unravel.limits import MAX_BLOCK_VALUES, MAX_CHANNELS, MAX_RATIO



@dataclass(frozen=True)
class MethodParams:
    """A method's `<m>_params`: (B, in_channels, T/in_ratio) -> (B, out_channels, T/out_ratio)."""

    in_channels: int
    in_ratio: int
    out_channels: int
    out_ratio: int

    def block(self, ratio: int | None) -> int:
        """The smallest input length (samples) the method runs without padding: whole frames
        of both sides, and for audio-to-audio methods such as forward (both ratios 1) whole
        latent frames of the model's `ratio` (None: the model has none)."""
        if self.in_ratio == self.out_ratio == 1 and ratio:
            return int(ratio)
        return math.lcm(self.in_ratio, self.out_ratio)

    def step(self, ratio: int | None) -> int:
        """The input length granularity (input frames): the block in the method's input frames."""
        return self.block(ratio) // self.in_ratio


def latent_ratio(methods: dict[str, MethodParams]) -> int | None:
    """The model's `ratio`: audio samples per latent frame, from its encode (or decode);
    None when it has neither."""
    enc, dec = methods.get("encode"), methods.get("decode")
    return enc.out_ratio if enc else (dec.in_ratio if dec else None)


def check_method_params(name: str, method: str, values: Sequence) -> None:
    """Refuse `<method>_params` values that are not whole numbers in range: channels
    1..MAX_CHANNELS, ratios 1..MAX_RATIO (and their lcm too), the smallest block at most
    MAX_BLOCK_VALUES values."""
    what = ("input channels", "input ratio", "output channels", "output ratio")
    for v, w in zip(values, what):
        top = MAX_CHANNELS if "channels" in w else MAX_RATIO
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v == int(v) and 1 <= v <= top):
            raise UnravelError(f"{name}: method '{method}' declares {w} {v:g} in {method}_params "
                               f"(must be a whole number from 1 to {top})")
    in_ch, in_r, out_ch, out_r = (int(v) for v in values)
    block = math.lcm(in_r, out_r)
    if block > MAX_RATIO:
        raise UnravelError(f"{name}: method '{method}' has ratios {in_r} and {out_r}: their "
                           f"common block {block} exceeds {MAX_RATIO}")
    if max(in_ch * (block // in_r), out_ch * (block // out_r)) > MAX_BLOCK_VALUES:
        raise UnravelError(f"{name}: method '{method}' is too large ({in_ch} x {block // in_r} "
                           f"-> {out_ch} x {block // out_r} values per block, limit {MAX_BLOCK_VALUES})")


def check_block(name: str, method: str, mp: MethodParams, ratio: int | None) -> None:
    """Refuse a method whose smallest block (MethodParams.block in a model of latent `ratio`)
    holds more than MAX_BLOCK_VALUES input values."""
    if mp.in_channels * mp.step(ratio) > MAX_BLOCK_VALUES:
        raise UnravelError(f"{name}: method '{method}' is too large ({mp.in_channels} x "
                           f"{mp.step(ratio)} values per block, limit {MAX_BLOCK_VALUES})")


def discover_methods(module, name: str = "model") -> dict[str, MethodParams]:
    """The methods of a TorchScript module (`get_methods()`, else every `<m>_params` buffer)
    that have a 4-value `<m>_params` buffer, checked (check_method_params; `name` names the
    file in the error)."""
    buffers = dict(module.named_buffers(recurse=False))
    if hasattr(module, "get_methods"):
        names = list(module.get_methods())
    else:
        names = [b[: -len("_params")] for b in buffers if b.endswith("_params")]
    methods = {}
    for m in names:
        params = buffers.get(f"{m}_params")
        if params is None or params.numel() != 4 or not hasattr(module, m):
            continue
        values = params.flatten().tolist()
        check_method_params(name, m, values)
        methods[m] = MethodParams(*(int(v) for v in values))
    return methods


def shape_change(old: dict[str, MethodParams], new: dict[str, MethodParams]) -> str:
    """What differs between two models' methods, in words (the first difference)."""
    for m, a in old.items():
        b = new.get(m)
        if b is None:
            return f"no method '{m}'"
        if b != a:
            return (f"{m} takes {b.in_channels} and gives {b.out_channels} channels "
                    f"(ratios {b.in_ratio}/{b.out_ratio}), was {a.in_channels} and {a.out_channels} "
                    f"({a.in_ratio}/{a.out_ratio})")
    extra = [m for m in new if m not in old]
    return f"new method '{extra[0]}'" if extra else "other methods"
