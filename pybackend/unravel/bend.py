"""Bend a loaded model's layers (the ops: Bender._apply): read/write weights, seeded ops computed
from the original weights, bit-exact restore, save as an nn~-loadable TorchScript file."""

from __future__ import annotations

import io
import math
import os
import pathlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

from unravel import modelcache, outops
from unravel import morph as morphing
from unravel.errors import UnravelError
from unravel.operations import BEND_OPS as OPS   # the ops, declared with the commands
from unravel.operations import CHANNEL_OPS
from unravel.limits import MAX_SEED
from unravel.model import Model

# The ops and what each does to the touched weights, always from the original weights.
SWITCHES = ("invert", "zero")   # the ops that are on or off
# One op at a time in this order, each on the weights the one before wrote, gives the same
# weights as all of them set on one layer (see Bender._apply).
CHAIN = ("spread", "invert", "offset", "randomize", "zero")
NOISE_SCALE = 1e-4  # randomize amount -> Gaussian noise std


@dataclass
class Settings:
    """One layer's current bend settings (Bender's sliders)."""

    offset: float = 0.0
    spread: float = 1.0
    randomize: float = 0.0
    invert: bool = False
    zero: bool = False
    percent: float = 100.0
    seed: int = 0


NEUTRAL = {op: getattr(Settings(), op) for op in OPS}   # each op's setting that changes nothing


def touched_indices(n: int, percent: float) -> torch.Tensor | None:
    """The floor(n*percent/100) evenly spaced indices (step 100/percent, wrapped modulo n);
    None means all n."""
    if percent >= 100:
        return None
    k = max(1, math.floor(n * percent / 100))
    return (torch.arange(k, dtype=torch.float64) * (100.0 / percent)).floor().long() % n


def channel_axis(module, layer: str, p: torch.Tensor) -> int:
    """The output-channel axis of a layer's tensor: 1 for a transposed convolution's weight
    (in, out, k), else 0 (conv and linear weights, biases)."""
    owner = module
    for part in layer.split(".")[:-1]:
        owner = getattr(owner, part)
    return 1 if p.dim() > 1 and "Transpose" in getattr(owner, "original_name", "") else 0


def pick_channels(n: int, channels: list[int] | None, percent: float | None, seed: int,
                  what: str) -> list[int]:
    """The given channels (each below n), else floor(n*percent/100) of them (at least one)
    picked with `seed`, else all n; sorted, without repeats."""
    if channels:
        bad = [c for c in channels if not 0 <= c < n]
        if bad:
            raise UnravelError(f"{what} has {n} output channels, got channel {bad[0]}")
        return sorted(set(channels))
    if percent is not None and percent < 100:
        k = max(1, math.floor(n * percent / 100))
        return sorted(np.random.default_rng(seed).choice(n, k, replace=False).tolist())
    return list(range(n))


class Bender:
    """Per-layer bend state over a Model; every write happens under model.lock."""

    def __init__(self, model: Model):
        self.model = model
        self._module = None
        self._target = None     # morph: ((file, mtime), its weights)
        self._sync()

    def _sync(self) -> None:
        """Forget all state when the model was reloaded (its weights are the originals again);
        follow the model to its device when it moved (the originals move with it). A Model
        with a Bender owns its module (copy on write, again after a reload shared it)."""
        self.model.own()
        if self._module is not self.model.module:
            self._module = self.model.module
            self._device, self._moves = self.model.device, self.model.moves
            self._params = dict(self._module.named_parameters())
            self._orig: dict[str, torch.Tensor] = {}
            self._settings: dict[str, Settings] = {}
            self._noise: dict[str, tuple[tuple, torch.Tensor]] = {}
            self._touched: dict[str, float] = {}  # layer -> percent of the elements that differ from orig
            self._sel: dict[tuple, object] = {}
            self._along: dict[str, str] = {}    # weight -> its bias, changed with it by a channel op
            self._outputs: outops.Ops = {}   # module path -> op -> its 0-dim CPU tensors
            self._calls: dict[str, dict[str, int]] = {}    # method -> outops.layer_calls
        elif self._moves != self.model.moves:
            dev, self._moves = self.model.device, self.model.moves
            self._device = dev
            self._params = dict(self._module.named_parameters())
            self._orig = {k: v.to(dev) for k, v in self._orig.items()}
            self._noise = {k: (key, v.to(dev)) for k, (key, v) in self._noise.items()}
            self._sel = {}

    def _param(self, layer: str) -> torch.Tensor:
        self._sync()
        p = self._params.get(layer)
        if p is None:
            raise UnravelError(f"{self.model.path.name}: no layer '{layer}'")
        return p

    def _original(self, layer: str) -> torch.Tensor:
        """The layer's original weights, flat (captured before the first write)."""
        if layer not in self._orig:
            self._orig[layer] = self._param(layer).detach().reshape(-1).clone()
        return self._orig[layer]

    def _write(self, layer: str, flat: torch.Tensor) -> None:
        p = self._param(layer)
        with self.model.lock, torch.no_grad():
            p.view(-1).copy_(flat)
            self.model.edits += 1

    def _replace(self, layer: str, flat: torch.Tensor) -> None:
        """Write the whole layer (its original already kept): its bend settings no longer apply."""
        self._settings.pop(layer, None)
        self._touched[layer] = 100.0
        self._write(layer, flat)

    # ------------------------------------------------------------------ public API

    def layers(self) -> list[str]:
        """Every layer name (fixed ones included; see modelinfo.layers for the learned flag)."""
        self._sync()
        return list(self._params)

    def settings(self, layer: str) -> dict:
        """The layer's current bend settings."""
        self._param(layer)
        return asdict(self._settings.get(layer, Settings()))

    def get_weights(self, layer: str) -> np.ndarray:
        """A flat float32 copy of the layer's current weights."""
        with self.model.lock:
            return self._param(layer).detach().reshape(-1).to("cpu", torch.float32).numpy().copy()

    def set_weights(self, layer: str, values) -> None:
        """Replace the layer's weights (flat, length numel); clears its bend settings."""
        p = self._param(layer)
        v = np.asarray(values, dtype=np.float32).reshape(-1)
        if v.size != p.numel():
            raise UnravelError(f"{self.model.path.name}: layer '{layer}' has {p.numel()} weights, got {v.size}")
        if not np.all(np.isfinite(v)):
            raise UnravelError(f"{self.model.path.name}: set_weights: layer '{layer}' takes finite "
                               f"numbers, got NaN or infinite values")
        self._original(layer)
        self._replace(layer, torch.from_numpy(v).to(p.device, p.dtype))

    def bend(self, layer: str, op: str, amount: float, percent: float | None = None, seed: int | None = None) -> int:
        """Change one setting (an op of OPS; SWITCHES are on when amount != 0), optionally
        percent and seed, and recompute the layer from its original weights. Returns the
        count of weights the settings touch."""
        if op not in OPS:
            raise UnravelError(f"bend: unknown op '{op}' (one of {', '.join(OPS)})")
        self._param(layer)
        if not math.isfinite(float(amount)):
            raise UnravelError(f"bend: amount must be a finite number, got {amount}")
        if percent is not None and not 0 < float(percent) <= 100:
            raise UnravelError(f"bend: percent must be in (0, 100], got {percent}")
        if seed is not None and not 0 <= int(seed) <= MAX_SEED:
            raise UnravelError(f"bend: seed must be between 0 and {MAX_SEED}, got {seed}")
        s = self._settings.setdefault(layer, Settings())
        if op in SWITCHES:
            setattr(s, op, bool(amount))
        else:
            setattr(s, op, float(amount))
        if percent is not None:
            s.percent = float(percent)
        if seed is not None:
            s.seed = int(seed)
        self._apply(layer, s)
        n = self._param(layer).numel()
        return n if s.percent >= 100 else max(1, math.floor(n * s.percent / 100))

    def _noise_for(self, layer: str, s: Settings, count: int) -> torch.Tensor:
        """Unit Gaussian noise for (seed, count), cached so slider moves stay cheap; drawn on
        the CPU (the same numbers on every device), kept on the model's device."""
        key = (s.seed, count)
        cached = self._noise.get(layer)
        if cached is None or cached[0] != key:
            g = torch.Generator().manual_seed(s.seed)
            cached = (key, torch.randn(count, generator=g).to(self._device))
            self._noise[layer] = cached
        return cached[1]

    def _selection(self, n: int, percent: float):
        """The touched elements as None (all), a slice (integer step) or an index tensor."""
        key = (n, percent)
        if key not in self._sel:
            if percent >= 100:
                sel = None
            else:
                step = 100.0 / percent
                k = max(1, math.floor(n * percent / 100))
                if step == int(step):
                    sel = slice(0, k * int(step), int(step))
                else:
                    sel = touched_indices(n, percent).to(self._device)
            if len(self._sel) > 64:
                self._sel.clear()
            self._sel[key] = sel
        return self._sel[key]

    @staticmethod
    def _put_back(flat: torch.Tensor, orig: torch.Tensor, sel) -> None:
        """Write the original values over the selection."""
        if sel is None:
            flat.copy_(orig)
        elif isinstance(sel, slice):
            flat[sel].copy_(orig[sel])
        else:
            flat.index_copy_(0, sel, orig[sel])

    def _apply(self, layer: str, s: Settings) -> None:
        """layer = original, with the selection replaced by orig*spread*(+-1) + offset + noise
        (or 0). Only the previously and currently touched elements are written."""
        orig = self._original(layer)
        p = self._param(layer)
        n = orig.numel()
        sel = self._selection(n, s.percent)
        scale = s.spread * (-1.0 if s.invert else 1.0)
        with self.model.lock, torch.no_grad():
            self.model.edits += 1
            flat = p.view(-1)
            prev = self._touched.get(layer)
            if prev is not None and prev != s.percent:
                self._put_back(flat, orig, self._selection(n, prev))
            self._touched[layer] = s.percent
            if sel is None or isinstance(sel, slice):
                target = flat if sel is None else flat[sel]
                if s.zero:
                    target.zero_()
                    return
                torch.mul(orig if sel is None else orig[sel], scale, out=target)
                if s.offset:
                    target.add_(s.offset)
                if s.randomize:
                    target.add_(self._noise_for(layer, s, target.numel()), alpha=s.randomize * NOISE_SCALE)
                return
            if s.zero:
                vals = torch.zeros(sel.numel(), dtype=flat.dtype, device=flat.device)
            else:
                vals = orig[sel].mul_(scale)
                if s.offset:
                    vals.add_(s.offset)
                if s.randomize:
                    vals.add_(self._noise_for(layer, s, sel.numel()), alpha=s.randomize * NOISE_SCALE)
            flat.index_copy_(0, sel, vals)

    def channels(self, layer: str, op: str, amount: float = 1.0, channels: list[int] | None = None,
                 percent: float | None = None, seed: int = 0) -> int:
        """An op of CHANNEL_OPS on the layer's output channels (`channels`, else `percent` of
        them picked with `seed`, else all), recomputed from the original weights: an exact
        rewrite of those rows (ConvTranspose weights: their columns), and of the same entries
        of the layer's bias when it has one (`restore` of the weight restores it too). Replaces
        the layer's other bends; returns how many channels it changed."""
        if op not in CHANNEL_OPS:
            raise UnravelError(f"channels: unknown op '{op}' (one of {', '.join(CHANNEL_OPS)})")
        p = self._param(layer)
        axis = channel_axis(self.model.module, layer, p)
        n = p.shape[axis]
        picked = pick_channels(n, channels, percent, seed, f"channels: layer '{layer}'")
        if op == "permute" and len(picked) < 2:
            raise UnravelError(f"channels: permute needs 2 channels or more, got {len(picked)}")
        w = self._original(layer).reshape(p.shape)
        idx = torch.tensor(picked, device=w.device)
        order = torch.tensor(np.random.default_rng([seed, 1]).permutation(picked), device=w.device) \
            if op == "permute" else idx

        def rewrite(t: torch.Tensor, axis: int) -> torch.Tensor:
            """`t` with the chosen channels on `axis` rewritten by the op."""
            rows = t.index_select(axis, order)
            if op == "ablate":
                rows = torch.zeros_like(rows)
            elif op != "permute":
                rows = rows * (-1.0 if op == "invert" else amount)
            return t.index_copy(axis, idx, rows)
        self._replace(layer, rewrite(w, axis).reshape(-1))
        bias = layer[:-len("weight")] + "bias" if layer.endswith(".weight") else ""
        if bias in self._params and self._params[bias].numel() == n:   # the channel is weight and bias
            self._replace(bias, rewrite(self._original(bias), 0))
            self._along[layer] = bias
        return len(picked)

    def morph(self, other: os.PathLike, t: float, prefix: str = "") -> morphing.Match:
        """Every layer (starting with `prefix`) whose name and shape match in the model file
        `other` becomes (1 - t)·original + t·other's (`unravel.morph`); clears their bend
        settings. `other`'s weights are read once and kept, so that t can move at control
        rate. Returns what matched and what did not."""
        key = (str(other), os.stat(other).st_mtime_ns)
        if self._target is None or self._target[0] != key:
            self._target = (key, morphing.weights(other))
        self._sync()
        m = morphing.match(self._params, self._target[1], prefix)
        for layer in m.layers:
            self._replace(layer, morphing.mix(self._original(layer), self._target[1][layer].reshape(-1), t))
        return m

    def output(self, layer: str, op: str, values: list[float], warm: bool = True) -> int:
        """An op of OUTPUT_OPS on what the layer (a module path, or its weight's name) gives,
        in every method that calls it (`unravel.outops`): a new value of an op already set
        is read at the next call, a new op rebuilds the methods (with `warm`, compiled on a
        copy of the module, not by the next calls). Returns how many calls of the layer the
        methods make."""
        outops.check(op, values)
        self._sync()
        path = outops.module_path(layer)
        for m in self.model.methods:
            if m not in self._calls:
                self._calls[m] = outops.layer_calls(self.model.module._c, m)
        calls = {m: self._calls[m].get(path, 0) for m in self.model.methods}
        if not any(calls.values()):
            raise UnravelError(f"output: no convolution or linear layer '{path}' in "
                               f"{', '.join(self.model.methods)}")
        ops = self._outputs.setdefault(path, {})
        if op in ops:
            with self.model.lock:
                for t, v in zip(ops[op], values):
                    t.fill_(float(v))
                self.model.edits += 1
        else:
            ops[op] = [torch.tensor(float(v)) for v in values]
            try:
                self._route([m for m, n in calls.items() if n], warm)
            except Exception:
                ops.pop(op)
                raise
        return sum(calls.values())

    def outputs(self) -> dict[str, dict[str, list[float]]]:
        """The output ops set: module path -> op -> its values."""
        self._sync()
        return {k: {op: [float(t) for t in ts] for op, ts in v.items()} for k, v in self._outputs.items() if v}

    def _route(self, methods, warm: bool = True) -> None:
        """Run `methods` with the output ops set (their own again where none applies)."""
        cmod = self.model.module._c
        for m in methods:
            fn, changed = outops.build(cmod, m, self._outputs)
            if changed and warm:
                mp = self.model.methods[m]
                outops.warm(fn, modelcache.jit_copy(cmod), torch.zeros(1, mp.in_channels, mp.step(self.model.ratio)))
            self.model.route(m, fn if changed else None)

    def restore(self, layer: str | None = None) -> list[str]:
        """Put the original weights back bit for bit (one layer or all) and clear settings and
        output ops; returns the layers restored."""
        self._sync()
        drop = list(self._outputs) if layer is None else [outops.module_path(layer)]
        routed = [k for k in drop if self._outputs.pop(k, None)]
        if routed:
            self._route(self.model.methods)
            if layer is not None and layer not in self._params:
                return [layer]
        names = list(self._orig) if layer is None else [layer]
        if layer is None:
            self._along.clear()
        elif layer in self._along:
            names.append(self._along.pop(layer))
        for name in names:
            self._param(name)
            if name in self._orig:
                self._write(name, self._orig[name])
            self._settings.pop(name, None)
            self._noise.pop(name, None)
            self._touched.pop(name, None)
        return names

    def save(self, path: os.PathLike, force: bool = False) -> pathlib.Path:
        """Save the bent model as a TorchScript file (see Model.save), its output ops put
        into its methods (`outops.bake`)."""
        self._sync()
        ops = self.outputs()
        if not ops:
            return self.model.save(path, force)
        from unravel.safewrite import write_bytes
        module = torch.jit.load(io.BytesIO(modelcache.module_bytes(self.model.module)), map_location="cpu")
        outops.bake(module._c, list(self.model.methods), ops)
        return write_bytes(pathlib.Path(path), modelcache.module_bytes(module), force=force)
