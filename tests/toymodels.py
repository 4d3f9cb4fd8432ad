"""Small RAVE-like TorchScript test models that follow nn~'s contract (the contract:
unravel.model's docstring).

- `make_test_model(...)`: tiny untrained seeded models reproducing the quirks of real RAVE
  exports (decode's extra optional argument, streaming caches with a batch limit,
  variational noise padding, stereo, no `get_methods`), for the tests of every helper.
- `make_hostile_model(...)`: one-method models that fail, hang, run slowly or return bad
  shapes or NaN, for the tests of what a careless or hostile model file does.

They share the contract parts and the fixed filterbank of the bundled models
(pybackend/unravel/data/toyrave.py). Exported files load with `torch.jit.load` alone.
"""

from __future__ import annotations

import os
import pathlib
from typing import List

import torch
from torch import nn

from unravel.data.toyrave import ContractBase, FixedFilterbank, export

MAX_BATCH = 64  # streaming exports accept at most this many batch items


class CachedConv1d(nn.Module):
    """A causal latent-rate convolution. When `streaming`, it keeps the last frames of each
    batch item between calls (like RAVE's cached convolutions) and refuses batch > 64."""

    def __init__(self, channels: int, kernel: int = 3, streaming: bool = False):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel)
        self.pad = kernel - 1
        self.streaming = streaming
        self.max_batch = MAX_BATCH
        self.register_buffer("cache", torch.zeros(MAX_BATCH, channels, kernel - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.streaming:
            b = x.shape[0]
            if b > self.max_batch:
                raise RuntimeError("streaming model: batch size above 64")
            x = torch.cat([self.cache[:b], x], -1)
            self.cache[:b].copy_(x[:, :, x.shape[-1] - self.pad:])
        else:
            x = nn.functional.pad(x, (self.pad, 0))
        return self.conv(x)


class TinyCodec(nn.Module):
    """The untrained test models' encoder/decoder: one strided conv each way."""

    def __init__(self, full_dims: int, out_channels: int, ratio: int, bands: int, streaming: bool):
        super().__init__()
        hop = ratio // bands
        self.out_channels = out_channels
        self.encoder = nn.Conv1d(bands, full_dims, hop, stride=hop)
        self.latent = CachedConv1d(full_dims, 3, streaming)
        self.decoder = nn.ConvTranspose1d(full_dims, bands * out_channels, hop, stride=hop)


class TestRave(ContractBase):
    """Untrained quirk model: pqmf -> strided conv -> latent (cached conv) -> conv-transpose."""

    def __init__(self, dims: int = 8, stereo: bool = False, streaming: bool = False,
                 variational: bool = False, sr: int = 44100, ratio: int = 2048, bands: int = 16,
                 streaming_encode: bool = False):
        super().__init__()
        out_ch = 2 if stereo else 1
        self.stereo = stereo  # RAVE exports carry this flag
        self.full_dims = dims + 4 if variational else dims
        self.pqmf = FixedFilterbank(bands)
        self.codec = TinyCodec(self.full_dims, out_ch, ratio, bands, streaming)
        self.bands = bands
        # a streaming encoder: a cached convolution on the latents (its state goes on between calls)
        self.enc_state = CachedConv1d(dims, 3, True) if streaming_encode else nn.Identity()
        self._setup_contract(dims, ratio, out_ch, sr)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.codec.encoder(self.pqmf.analysis(x))
        return self.enc_state(z[:, : self.latent_dims])

    def _decode(self, z: torch.Tensor, from_forward: bool) -> torch.Tensor:
        if z.shape[1] < self.full_dims:  # variational exports pad missing dims with noise
            noise = torch.randn(z.shape[0], self.full_dims - z.shape[1], z.shape[2])
            z = torch.cat([z, noise * self.temperature], 1)
        z = self.codec.latent(z) * self.temperature
        y = self.codec.decoder(z)
        b = y.shape[0]
        y = y.reshape(b * self.out_channels, self.bands, y.shape[-1])
        y = torch.tanh(self.pqmf.synthesis(y))
        return y.reshape(b, self.out_channels, y.shape[-1])

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._decode(self._encode(x), True)


# Mixins selecting the quirks that change TorchScript signatures.
class _DecodeArg(nn.Module):
    @torch.jit.export
    def decode(self, z: torch.Tensor, from_forward: bool = False) -> torch.Tensor:
        return self._decode(z, from_forward)


class _DecodePlain(nn.Module):
    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._decode(z, False)


class _Methods(nn.Module):
    @torch.jit.export
    def get_methods(self) -> List[str]:
        return ["forward", "encode", "decode"]


def _quirk_class(decode_arg: bool, get_methods: bool) -> type:
    bases = (_DecodeArg if decode_arg else _DecodePlain,) + ((_Methods,) if get_methods else ()) + (TestRave,)
    name = "TestRave" + ("Arg" if decode_arg else "") + ("" if get_methods else "NoMethods")
    return type(name, bases, {})


def make_test_model(path: os.PathLike, dims: int = 8, stereo: bool = False, streaming: bool = False,
                    decode_arg: bool = False, variational: bool = False, no_get_methods: bool = False,
                    sr: int = 44100, seed: int = 0, sr_attr: str = "sr", ratio: int = 2048,
                    streaming_encode: bool = False) -> pathlib.Path:
    """Write a small untrained seeded TorchScript model with the chosen RAVE export quirks.

    decode_arg: `decode(z, from_forward: bool=False)`; streaming: cached latent convolution
    keeping state between calls, batch <= 64 (`streaming_encode`: in encode too); variational: decode pads missing latent dims
    with random noise; stereo: 2 output channels; no_get_methods: methods only from
    `<m>_params` buffers. Attribute `temperature` (float, set_ returns 0, -1 if negative)."""
    torch.manual_seed(seed)
    cls = _quirk_class(decode_arg, not no_get_methods)
    module = cls(dims=dims, stereo=stereo, streaming=streaming, variational=variational, sr=sr, ratio=ratio,
                 streaming_encode=streaming_encode)
    with torch.no_grad():  # larger init so the untrained output is clearly non-silent
        for p in module.codec.parameters():
            p.mul_(4.0)
    return export(module, path, sr=sr, sr_attr=sr_attr)


class _PanelAttrs(nn.Module):
    """The attributes of MSPrior (temperature, listen) and AFTER (guidance_structure,
    guidance_timbre, nb_steps) exports; get_attributes lists only `names`."""
    __annotations__ = {"names": List[str]}     # a real type (this file's annotations are strings)

    @torch.jit.export
    def get_attributes(self) -> List[str]:
        return self.names

    @torch.jit.export
    def get_listen(self) -> bool:
        return self.listen

    @torch.jit.export
    def set_listen(self, value: bool) -> int:
        self.listen = value
        return 0

    @torch.jit.export
    def get_guidance_structure(self) -> float:
        return self.guidance_structure

    @torch.jit.export
    def set_guidance_structure(self, value: float) -> int:
        self.guidance_structure = value
        return 0

    @torch.jit.export
    def get_guidance_timbre(self) -> float:
        return self.guidance_timbre

    @torch.jit.export
    def set_guidance_timbre(self, value: float) -> int:
        self.guidance_timbre = value
        return 0

    @torch.jit.export
    def get_nb_steps(self) -> int:
        return self.nb_steps

    @torch.jit.export
    def set_nb_steps(self, value: int) -> int:
        self.nb_steps = value
        return 0


class PanelRave(_PanelAttrs, _DecodePlain, _Methods, TestRave):
    def __init__(self, names: List[str]):
        TestRave.__init__(self)
        self.names = list(names)
        self.listen, self.guidance_structure, self.guidance_timbre, self.nb_steps = False, 1.0, 1.0, 8


def make_attribute_model(path: os.PathLike, names: List[str], seed: int = 0) -> pathlib.Path:
    """A plain test model whose get_attributes lists `names`, any of temperature, listen
    (MSPrior's), guidance_structure, guidance_timbre, nb_steps (AFTER's); [] for a model
    without attributes, as a RAVE export without a prior."""
    torch.manual_seed(seed)
    return export(PanelRave(names), path)


class Hostile(nn.Module):
    """A model file as a careless or hostile user may give one: `forward` with any declared
    `forward_params` and a misbehaviour (see make_hostile_model)."""

    def __init__(self, params: List[int], behave: str, spins: int, after: int):
        super().__init__()
        self.register_buffer("forward_params", torch.tensor(params, dtype=torch.int64))
        self.behave = behave
        self.spins = spins
        self.after = after
        self.calls = 0
        self.w = nn.Parameter(torch.zeros(64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.behave == "hang" and self.calls > self.after:
            while self.calls > 0:           # never returns
                x = x * 0.5
        if self.behave == "watch":
            # 1 where the weights changed while this call ran (an edit landed mid-call)
            before = self.w.sum()
            y = x
            for _ in range(self.spins):
                y = y * 0.5 + 0.25
            return x * 0.0 + (self.w.sum() != before).float() + (y - y)
        if self.behave == "raise":
            raise RuntimeError("hostile model: this method always fails")
        if self.behave == "shape":
            return x[0]
        if self.behave == "nan" and self.calls > self.after:
            return x * float("nan")
        y = x
        if self.calls > self.after:
            for _ in range(self.spins):     # "slow": busy for a while on each call
                y = y * 0.5 + 0.25
        return x * 0.5 + (y - y)


HOSTILE = ("ok", "raise", "shape", "nan", "slow", "hang", "watch")


def make_hostile_model(path: os.PathLike, params: List[int] = (1, 1, 1, 1), behave: str = "ok",
                       spins: int = 0, after: int = 0) -> pathlib.Path:
    """Write a one-method (`forward`) TorchScript model declaring `forward_params` = params
    (any values, e.g. a ratio of 0 or 2**32, 10**6 channels) that behaves as `behave`:
    "ok" (halves its input), "raise" (always fails), "shape" (returns a 2-D tensor), "nan"
    (NaN output after `after` calls), "slow" (`spins` tensor operations per call after
    `after` calls; the warmup at load is two calls), "hang" (a call after `after` calls never
    returns), "watch" (outputs 1 where its layer `w` changed during the call, 0 elsewhere;
    `spins` operations per call). Its layer `w` (64 zeros) can be bent."""
    if behave not in HOSTILE:
        raise ValueError(f"behave must be one of {HOSTILE}")
    return export(Hostile(list(params), behave, spins if behave in ("slow", "watch") else 0,
                          after), path)


class StateLeak(nn.Module):
    """A model that keeps state which a silent warm-up does not reveal: `delay_line` (a
    100-sample delay in a buffer, no bias: zeros leave it as it is) or else a call counter
    in an int attribute. Its one weight `w` is shared between Models."""

    def __init__(self, delay_line: bool):
        super().__init__()
        self.register_buffer("forward_params", torch.tensor([1, 1, 1, 1]))
        self.register_buffer("line", torch.zeros(1, 1, 100))
        self.w = nn.Parameter(torch.ones(1))
        self.delay_line = delay_line
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay_line:
            buf = torch.cat([self.line, x], -1)
            self.line.copy_(buf[:, :, buf.shape[-1] - self.line.shape[-1]:])
            return buf[:, :, :x.shape[-1]] * self.w
        self.calls += 1
        return x * self.w * float(self.calls % 7)


def make_state_leak_model(path: os.PathLike, kind: str) -> pathlib.Path:
    """Write a StateLeak model: kind "delay" (state in a buffer) or "counter" (in an int)."""
    return export(StateLeak(kind == "delay"), path)


class VoiceFir(nn.Module):
    """A streaming FIR filter at audio rate, `forward` only (1 channel in and out): each batch
    item keeps its last taps - 1 input samples in `cache` (64 items, as RAVE's caches) between
    calls. Only element-wise arithmetic, so that an item of a batch gives bit for bit what a
    call of that item alone gives (batched convolutions round differently). Its layer is
    `fir.weight`."""

    def __init__(self, taps: int = 16):
        super().__init__()
        self.register_buffer("forward_params", torch.tensor([1, 1, 1, 1]))
        self.register_buffer("cache", torch.zeros(MAX_BATCH, 1, taps - 1))
        self.fir = nn.Module()
        self.fir.weight = nn.Parameter(torch.linspace(1.0, -0.5, taps) / taps * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[0], x.shape[-1]
        w = self.fir.weight
        k = w.shape[0]
        buf = torch.cat([self.cache[:b], x], -1)
        self.cache[:b].copy_(buf[:, :, buf.shape[-1] - (k - 1):])
        y = torch.zeros_like(x)
        for j in range(k):
            y = y + buf[:, :, k - 1 - j:k - 1 - j + n] * w[j]
        return y * 0.5


def make_voice_model(path: os.PathLike, taps: int = 16) -> pathlib.Path:
    """Write a VoiceFir model (streaming, batch-exact: see VoiceFir)."""
    return export(VoiceFir(taps), path)
