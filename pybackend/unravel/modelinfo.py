"""What a loaded model holds, for inspection: its layers (parameter tensors), buffers, class
names, and the summary `unravel info` prints (`info`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from unravel.model import Model


@dataclass(frozen=True)
class Layer:
    """A parameter tensor of the model; learned=False for fixed filterbanks (pqmf.*)."""

    name: str
    shape: tuple[int, ...]
    numel: int
    learned: bool


def layers(module: torch.nn.Module) -> list[Layer]:
    """Every parameter tensor of `module`; fixed filterbanks (pqmf.*, or frozen among
    trainable weights) are flagged learned=False."""
    params = list(module.named_parameters())
    any_trainable = any(p.requires_grad for _, p in params)
    return [
        Layer(n, tuple(p.shape), p.numel(),
              not ("pqmf" in n.split(".") or (any_trainable and not p.requires_grad)))
        for n, p in params
    ]


def num_parameters(module: torch.nn.Module) -> int:
    """Total number of parameter elements of `module`."""
    return sum(p.numel() for p in module.parameters())


def buffers(module: torch.nn.Module) -> list[Layer]:
    """The state dict's buffers (tensors that are not parameters: method shapes, caches,
    filterbanks), all flagged learned=False."""
    return [Layer(n, tuple(b.shape), b.numel(), False) for n, b in module.named_buffers()]


def classes(module: torch.nn.Module) -> dict:
    """The class names UnRAVEl's inspector shows: `encoder` (and `encoder_inner`, the
    encoder it wraps, e.g. WasserteinEncoder around EncoderV2), `decoder` (e.g.
    GeneratorV2), from `encoder`/`decoder` or a legacy `_rave.` submodule; `stereo`,
    the model's flag. None where the model does not have it."""
    def name(*path: str) -> str | None:
        m = module
        for part in path:
            m = getattr(m, part, None)
            if not isinstance(m, torch.nn.Module):
                return None
        return getattr(m, "original_name", type(m).__name__)

    root = () if name("encoder") or name("decoder") else ("_rave",)
    stereo = getattr(module, "stereo", None)
    return {"encoder": name(*root, "encoder"), "encoder_inner": name(*root, "encoder", "encoder"),
            "decoder": name(*root, "decoder"),
            "stereo": bool(stereo) if isinstance(stereo, (bool, int)) else None}


def info(model: Model) -> dict:
    """JSON-able summary of a Model: path, sr, methods, latent dims, ratio, attributes,
    encoder and decoder classes, stereo flag, layers (parameters) and buffers."""
    module = model.module
    return {
        "path": str(model.path),
        "sr": model.sr,
        "methods": {m: vars(mp).copy() for m, mp in model.methods.items()},
        "latent_dims": model.latent_dims,
        "ratio": model.ratio,
        "in_channels": model.in_channels,
        "out_channels": model.out_channels,
        "attributes": {a: model.get_attribute(a) for a in model.attributes()},
        "parameters": num_parameters(module),
        **classes(module),
        "layers": [{"name": l.name, "shape": list(l.shape), "numel": l.numel, "learned": l.learned}
                   for l in layers(module)],
        "buffers": [{"name": b.name, "shape": list(b.shape), "numel": b.numel}
                    for b in buffers(module)],
    }


def sample_rate(module: torch.jit.ScriptModule) -> int | None:
    """The sample rate a model declares (`sr`, `sampling_rate`, or its `_rave`'s), else None."""
    for owner, attr in ((module, "sr"), (module, "sampling_rate"), (getattr(module, "_rave", None), "sampling_rate")):
        if owner is not None and hasattr(owner, attr):
            v = getattr(owner, attr)
            try:
                return int(v.item() if isinstance(v, torch.Tensor) else v)
            except (TypeError, ValueError, RuntimeError):
                continue
    return None


def convert_attribute(current, value):
    """`value` converted to the type of an attribute's `current` value."""
    if isinstance(current, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "on", "yes")
        return bool(value)
    if isinstance(current, int):
        return int(float(value)) if isinstance(value, str) else int(value)
    if isinstance(current, (float, str)):
        return type(current)(value)
    return value
