"""Resampling with torchaudio's default kernel, as the original UnRAVEl and RAVE-Latent-
Diffusion resample: a bank of Hann-windowed sincs, one per output phase, 6 zero crossings
each side, cut off at 0.99 of the lower Nyquist frequency, applied as a strided convolution
(the kernel computed in float64 and applied in float32, as torchaudio's `Resample`
transform, which the original encoder uses, makes it).

`unravel.audio.resample` offers it (`sinc`, the default) beside scipy's polyphase filter.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from unravel import limits
from unravel.errors import UnravelError

ZERO_CROSSINGS = 6     # torchaudio's lowpass_filter_width
ROLLOFF = 0.99         # the cutoff, as a share of the lower rate's Nyquist frequency


def sinc_kernel(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """The filters for `orig` input samples -> `new` output samples (the rates divided by
    their gcd): float32 (new, 1, 2 * width + orig), filter i giving output phase i, computed
    in float64; and `width`, the input samples each side that a filter reaches.

    Output i of a block sits at time i/new, input j at j/orig (in input blocks); its
    weight is sinc(x) * cos(x * pi / 12)^2 * cutoff / orig for x = cutoff * (j/orig - i/new)
    clipped to +-6, where cutoff = 0.99 * min(orig, new)."""
    cutoff = min(orig, new) * ROLLOFF
    width = math.ceil(ZERO_CROSSINGS * orig / cutoff)
    inputs = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + inputs
    t = (t * cutoff).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)
    window = torch.cos(t * math.pi / ZERO_CROSSINGS / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones((), dtype=torch.float64), torch.sin(t) / t)
    return (sinc * (window * (cutoff / orig))).to(torch.float32), width


def resample_sinc(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """(channels, n) audio at sr_in -> float32 (channels, ceil(n * sr_out / sr_in)) at sr_out
    with the kernel of `sinc_kernel` (the input zero-padded at both ends)."""
    g = math.gcd(sr_in, sr_out)
    orig, new = sr_in // g, sr_out // g
    kernel_width = 2 * math.ceil(ZERO_CROSSINGS * orig / (min(orig, new) * ROLLOFF)) + orig
    if new * kernel_width > limits.MAX_RESAMPLE_TAPS:
        raise UnravelError(f"resample: {sr_in} -> {sr_out} Hz needs {new * kernel_width} filter "
                           f"taps with the sinc resampler, more than {limits.MAX_RESAMPLE_TAPS}; "
                           f"use the poly resampler")
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    channels, n = x.shape
    kernel, width = sinc_kernel(orig, new)
    padded = torch.nn.functional.pad(x[:, None], (width, width + orig))
    with torch.inference_mode():
        y = torch.nn.functional.conv1d(padded, kernel, stride=orig)   # (channels, new, blocks)
    y = y.transpose(1, 2).reshape(channels, -1)
    return np.ascontiguousarray(y[:, : math.ceil(new * n / orig)].numpy())
