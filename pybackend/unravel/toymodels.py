"""Small RAVE-like TorchScript models that follow nn~'s contract (DESIGN section 3).

Two uses:
- `make_test_model(...)`: tiny untrained seeded models reproducing the quirks of real RAVE
  exports (decode's extra optional argument, streaming caches with a batch limit,
  variational noise padding, stereo, no `get_methods`), for the tests of every helper.
- `ToyRave` with a fixed MDCT filterbank under `pqmf.` and a conv encoder/decoder: the
  architecture of the bundled default models (see `unravel.train_default`).

Everything here is plain torch; exported files load with `torch.jit.load` alone.
"""

from __future__ import annotations

import math
import os
import pathlib
import tempfile
from typing import List

import torch
from torch import nn

MAX_BATCH = 64  # streaming exports accept at most this many batch items


# --------------------------------------------------------------------------- building blocks


class FixedFilterbank(nn.Module):
    """A fixed (not learned) MDCT filterbank with `bands` bands: analysis (B, 1, n) ->
    (B, bands, n/bands), synthesis back. Perfect reconstruction except the last `bands`
    samples. Weights are parameters with requires_grad=False, like RAVE's `pqmf.*`."""

    def __init__(self, bands: int = 16):
        super().__init__()
        m = bands
        n = torch.arange(2 * m, dtype=torch.float64)
        k = torch.arange(m, dtype=torch.float64)[:, None]
        window = torch.sin(math.pi * (n + 0.5) / (2 * m))
        h = window * torch.cos(math.pi / m * (n + 0.5 + m / 2) * (k + 0.5)) * math.sqrt(2.0 / m)
        self.bands = m
        self.weight = nn.Parameter(h[:, None, :].float(), requires_grad=False)

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, n) with n a multiple of bands -> (B, bands, n / bands)."""
        x = nn.functional.pad(x, (self.bands, 0))
        return nn.functional.conv1d(x, self.weight, stride=self.bands)

    def synthesis(self, y: torch.Tensor) -> torch.Tensor:
        """(B, bands, T) -> (B, 1, T * bands)."""
        x = nn.functional.conv_transpose1d(y, self.weight, stride=self.bands)
        return x[:, :, self.bands:]


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


def _down(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Conv1d(cin, cout, 2 * stride, stride=stride, padding=stride // 2)


def _up(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.ConvTranspose1d(cin, cout, 2 * stride, stride=stride, padding=stride // 2)


class ConvEncoder(nn.Module):
    """(B, bands, n) -> (B, dims, n / prod(strides))."""

    def __init__(self, bands: int, dims: int, widths: List[int], strides: List[int]):
        super().__init__()
        layers: List[nn.Module] = [nn.Conv1d(bands, widths[0], 7, padding=3)]
        for i, s in enumerate(strides):
            layers += [nn.LeakyReLU(0.2), _down(widths[i], widths[i + 1], s)]
        layers += [nn.LeakyReLU(0.2), nn.Conv1d(widths[-1], dims, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """(B, dims, T) -> (B, bands * channels, T * prod(strides))."""

    def __init__(self, bands: int, dims: int, widths: List[int], strides: List[int]):
        super().__init__()
        w = widths[::-1]
        layers: List[nn.Module] = [nn.Conv1d(dims, w[0], 3, padding=1)]
        for i, s in enumerate(strides[::-1]):
            layers += [nn.LeakyReLU(0.2), _up(w[i], w[i + 1], s)]
        layers += [nn.LeakyReLU(0.2), nn.Conv1d(w[-1], bands, 7, padding=3)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


# --------------------------------------------------------------------------- exportable models


class _Base(nn.Module):
    """Shared contract parts: method params buffers, attributes, sr."""

    def _setup_contract(self, dims: int, ratio: int, out_channels: int, sr: int):
        self.register_buffer("encode_params", torch.tensor([1, 1, dims, ratio]))
        self.register_buffer("decode_params", torch.tensor([dims, ratio, out_channels, 1]))
        self.register_buffer("forward_params", torch.tensor([1, 1, out_channels, 1]))
        self.latent_dims = dims
        self.ratio = ratio
        self.out_channels = out_channels
        self.temperature = 1.0

    @torch.jit.export
    def get_attributes(self) -> List[str]:
        return ["temperature"]

    @torch.jit.export
    def get_temperature(self) -> float:
        return self.temperature

    @torch.jit.export
    def set_temperature(self, value: float) -> int:
        if value < 0.0:
            return -1
        self.temperature = value
        return 0


class TestRave(_Base):
    """Untrained quirk model: pqmf -> strided conv -> latent (cached conv) -> conv-transpose."""

    def __init__(self, dims: int = 8, stereo: bool = False, streaming: bool = False,
                 variational: bool = False, sr: int = 44100, ratio: int = 2048, bands: int = 16):
        super().__init__()
        out_ch = 2 if stereo else 1
        self.full_dims = dims + 4 if variational else dims
        self.pqmf = FixedFilterbank(bands)
        self.codec = TinyCodec(self.full_dims, out_ch, ratio, bands, streaming)
        self.bands = bands
        self._setup_contract(dims, ratio, out_ch, sr)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.codec.encoder(self.pqmf.analysis(x))
        return z[:, : self.latent_dims]

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


class ToyRave(_Base):
    """The bundled default model: fixed MDCT filterbank (`pqmf.*`), conv encoder with
    strides up to the ratio, conv-transpose decoder. Deterministic."""

    def __init__(self, dims: int = 8, sr: int = 44100, bands: int = 16,
                 widths: List[int] = (64, 96, 128, 128, 128), strides: List[int] = (4, 4, 4, 2)):
        super().__init__()
        widths, strides = list(widths), list(strides)
        ratio = bands * math.prod(strides)
        self.pqmf = FixedFilterbank(bands)
        self.encoder = ConvEncoder(bands, dims, widths, strides)
        self.decoder = ConvDecoder(bands, dims, widths, strides)
        self._setup_contract(dims, ratio, 1, sr)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.pqmf.analysis(x))

    def _decode(self, z: torch.Tensor, from_forward: bool) -> torch.Tensor:
        return self.pqmf.synthesis(self.decoder(z * self.temperature))

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode(x)

    @torch.jit.export
    def decode(self, z: torch.Tensor, from_forward: bool = False) -> torch.Tensor:
        return self._decode(z, from_forward)

    @torch.jit.export
    def get_methods(self) -> List[str]:
        return ["forward", "encode", "decode"]

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


class _SrAttr(nn.Module):
    """Holds `sampling_rate`, as RAVE's inner `_rave` module does."""

    def __init__(self, sr: int):
        super().__init__()
        self.sampling_rate = sr


def _quirk_class(decode_arg: bool, get_methods: bool) -> type:
    bases = (_DecodeArg if decode_arg else _DecodePlain,) + ((_Methods,) if get_methods else ()) + (TestRave,)
    name = "TestRave" + ("Arg" if decode_arg else "") + ("" if get_methods else "NoMethods")
    return type(name, bases, {})


def export(module: nn.Module, path: os.PathLike, sr: int = 44100, sr_attr: str = "sr") -> pathlib.Path:
    """Script `module` and save it to `path` (temp name + rename). `sr_attr` is where the
    sample rate goes: "sr", "sampling_rate", "_rave" (`_rave.sampling_rate`) or "none"."""
    path = pathlib.Path(path)
    if sr_attr in ("sr", "sampling_rate"):
        setattr(module, sr_attr, int(sr))
    elif sr_attr == "_rave":
        module._rave = _SrAttr(int(sr))
    module.eval()
    scripted = torch.jit.script(module)
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.jit.save(scripted, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def make_test_model(path: os.PathLike, dims: int = 8, stereo: bool = False, streaming: bool = False,
                    decode_arg: bool = False, variational: bool = False, no_get_methods: bool = False,
                    sr: int = 44100, seed: int = 0, sr_attr: str = "sr", ratio: int = 2048) -> pathlib.Path:
    """Write a small untrained seeded TorchScript model with the chosen RAVE export quirks.

    decode_arg: `decode(z, from_forward: bool=False)`; streaming: cached latent convolution
    keeping state between calls, batch <= 64; variational: decode pads missing latent dims
    with random noise; stereo: 2 output channels; no_get_methods: methods only from
    `<m>_params` buffers. Attribute `temperature` (float, set_ returns 0, -1 if negative)."""
    torch.manual_seed(seed)
    cls = _quirk_class(decode_arg, not no_get_methods)
    module = cls(dims=dims, stereo=stereo, streaming=streaming, variational=variational, sr=sr, ratio=ratio)
    with torch.no_grad():  # larger init so the untrained output is clearly non-silent
        for p in module.codec.parameters():
            p.mul_(4.0)
    return export(module, path, sr=sr, sr_attr=sr_attr)
