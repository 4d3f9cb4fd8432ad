"""The bundled models and loop (see README.md beside this file): `ToyRave`, a RAVE-like
model following nn~'s contract (the contract: unravel.model's docstring) with a fixed MDCT
filterbank under `pqmf.` and a conv encoder/decoder, trained on `make_loop()` by

    python pybackend/unravel/data/toyrave.py train --out pybackend/unravel/data

Not part of the unravel package (nothing in it imports this file); the tests' models
(tests/toymodels.py) share its contract parts, filterbank and `export`. Everything here is
plain torch; exported files load with `torch.jit.load` alone.
"""

from __future__ import annotations

import io
import math
import os
import pathlib
from typing import List

import torch
from torch import nn

from unravel.audio import write as write_audio
from unravel.safewrite import write_bytes


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


class ContractBase(nn.Module):
    """The contract parts a model shares: method params buffers, attributes, sr."""

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


class ToyRave(ContractBase):
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


class _SrAttr(nn.Module):
    """Holds `sampling_rate`, as RAVE's inner `_rave` module does."""

    def __init__(self, sr: int):
        super().__init__()
        self.sampling_rate = sr


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
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    return write_bytes(path, buf.getvalue(), force=True)


# --------------------------------------------------------------------------- the bundled loop


def _filter(x, kind: str, freq, sr: int, order: int = 4):
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(order, freq, kind, fs=sr, output="sos"), x)


def make_loop(sr: int = 44100, bpm: float = 180.0, bars: int = 6, seed: int = 0):
    """A synthetic drum-and-bass style loop (kick, snare, hats, a reese-like bass line),
    mono float32 in [-1, 1]; same seed, same samples. 6 bars at 180 BPM = 8 s."""
    import numpy as np

    rng = np.random.default_rng(seed)
    step = int(round(sr * 60 / bpm / 4))  # a 16th note
    n = step * 16 * bars
    out = np.zeros(n)

    def put(sound, at: int, gain: float):
        end = min(n, at + len(sound))
        out[at:end] += gain * sound[: end - at]

    t = np.arange(int(0.4 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(45 + 120 * np.exp(-t * 35)) / sr) * np.exp(-t * 9)
    kick[: int(0.002 * sr)] += rng.uniform(-0.5, 0.5, int(0.002 * sr))
    ts = t[: int(0.25 * sr)]
    snare_noise = _filter(rng.standard_normal(len(ts)), "bandpass", (900, 7000), sr)
    snare = 0.5 * np.sin(2 * np.pi * 185 * ts) * np.exp(-ts * 25) + 1.2 * snare_noise * np.exp(-ts * 16)
    th = t[: int(0.12 * sr)]
    hat = _filter(rng.standard_normal(len(th)), "highpass", 7000, sr) * np.exp(-th * 70)
    open_hat = _filter(rng.standard_normal(len(th)), "highpass", 6000, sr) * np.exp(-th * 18)

    for bar in range(bars):
        b0 = bar * 16 * step
        kicks = [0, 10] + ([7] if bar % 2 else [14] if bar % 3 == 2 else [])
        for s in kicks:
            put(kick, b0 + s * step, 0.95)
        for s in (4, 12):
            put(snare, b0 + s * step, 0.6)
        for s in range(0, 16, 2):
            if s % 8 == 6 and rng.random() < 0.5:
                put(open_hat, b0 + s * step, 0.18)
            else:
                put(hat, b0 + s * step, rng.uniform(0.15, 0.3))
        for s in range(1, 16, 2):
            if rng.random() < 0.35:
                put(hat, b0 + s * step, rng.uniform(0.05, 0.12))
        if rng.random() < 0.5:
            put(snare, b0 + 15 * step, 0.15)

    # bass: one note per 8th-note pair, a phrase per two bars, detuned saws low-passed
    root = 41.2  # E1
    phrase = [0, 0, 0, 3, 5, 5, 3, 0, 7, 7, 5, 3, 0, 0, -2, -2]
    freq = np.zeros(n)
    gate = np.zeros(n)
    note_len = 2 * step
    for i in range(n // note_len):
        f = root * 2 ** (phrase[i % len(phrase)] / 12)
        freq[i * note_len:(i + 1) * note_len] = f
        tt = np.arange(note_len) / sr
        gate[i * note_len:(i + 1) * note_len] = np.minimum(1, tt * 200) * np.exp(-tt * 2.5)
    bass = np.zeros(n)
    for detune in (0.995, 1.0, 1.006):
        phase = np.cumsum(freq * detune) / sr
        bass += 2 * (phase % 1.0) - 1
    bass = _filter(bass / 3, "lowpass", 420, sr)
    duck = np.ones(n)
    for bar in range(bars):
        for s in (0, 10):
            at = bar * 16 * step + s * step
            m = min(n - at, len(t))
            duck[at:at + m] = np.minimum(duck[at:at + m], 1 - 0.6 * np.exp(-t[:m] * 12))
    out += 0.55 * bass * gate * duck
    out *= 0.89 / np.abs(out).max()
    return out.astype(np.float32)


# --------------------------------------------------------------------------- training


def stft_distance(x, y, ffts=(2048, 1024, 512, 256, 128)):
    """Multi-resolution spectral distance: mean over FFT sizes of spectral convergence plus
    mean absolute log-magnitude difference. x, y: tensors (..., n)."""
    total = 0.0
    for nfft in ffts:
        win = torch.hann_window(nfft, device=x.device)
        sx = torch.stft(x.reshape(-1, x.shape[-1]), nfft, nfft // 4, window=win, return_complex=True).abs()
        sy = torch.stft(y.reshape(-1, y.shape[-1]), nfft, nfft // 4, window=win, return_complex=True).abs()
        conv = torch.linalg.norm(sx - sy) / (torch.linalg.norm(sx) + 1e-7)
        logmag = (torch.log(sx + 1e-5) - torch.log(sy + 1e-5)).abs().mean()
        total = total + conv + logmag
    return total / len(ffts)


def reconstruction_distance(model, audio) -> float:
    """stft_distance between the loop and decode(encode(loop)) for a ToyRave or a loaded
    TorchScript model. audio: 1-D float32 numpy."""
    x = torch.from_numpy(audio)[None, None]
    n = x.shape[-1] - x.shape[-1] % 2048
    x = x[..., :n]
    with torch.no_grad():
        y = model.decode(model.encode(x))
    return float(stft_distance(x[0, 0], y[0, 0]))


TRAIN_FFTS = (2048, 512, 128)


def train(dims: int, audio, steps: int, seed: int = 0, batch: int = 8, crop: int = 16384,
          log=print) -> "ToyRave":
    """Train a ToyRave on random crops of `audio` (multi-resolution STFT loss, small latent
    penalty, latent noise so decoded generated latents stay plausible); returns it in eval
    mode. Same seed and steps on the same torch build and thread count -> same weights."""
    import time

    import numpy as np

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ToyRave(dims=dims)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    x_all = torch.from_numpy(audio)
    start = time.process_time()
    for step in range(steps):
        lr = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * step / steps))  # cosine decay
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, len(audio) - crop, batch)
        x = torch.stack([x_all[s:s + crop] for s in starts])[:, None]
        x = x * torch.from_numpy(rng.uniform(0.5, 1.0, (batch, 1, 1)).astype(np.float32))
        z = model.encoder(model.pqmf.analysis(x))
        y = model.pqmf.synthesis(model.decoder(z + 0.05 * torch.randn_like(z)))
        loss = stft_distance(x, y, TRAIN_FFTS) + 1e-3 * (z ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            log(f"dims {dims} step {step + 1}/{steps} cpu {time.process_time() - start:.0f}s loss {loss.item():.4f}")
    model.eval()
    return model


def main(argv=None) -> int:
    """`toyrave.py train --out DIR [--steps N]`: make loop.wav, default.ts, default4.ts and
    print the spectral distances (trained vs. untrained); `toyrave.py loop --out DIR
    [--bars N]`: only loop.wav (N bars, e.g. longer audio for prepare-diffusion)."""
    import argparse
    import time

    import soundfile as sf

    ap = argparse.ArgumentParser(prog="python pybackend/unravel/data/toyrave.py")
    ap.add_argument("command", choices=["train", "loop"])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent))
    ap.add_argument("--steps", type=int, default=5000, help="training steps of the 8-dim model")
    ap.add_argument("--steps4", type=int, default=2500, help="training steps of the 4-dim model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bars", type=int, default=6,
                    help="bars of the loop at 180 BPM, 4/3 s each (default 6: the bundled 8 s)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    audio = make_loop(bars=a.bars, seed=a.seed)
    write_audio(out / "loop.wav", audio, 44100, subtype="PCM_16", force=True)
    print(f"wrote {out / 'loop.wav'} ({len(audio) / 44100:.2f} s)")
    if a.command == "loop":
        return 0
    audio, _ = sf.read(out / "loop.wav", dtype="float32")  # train on what is shipped
    for dims, steps, name in ((8, a.steps, "default.ts"), (4, a.steps4, "default4.ts")):
        torch.manual_seed(a.seed)
        untrained = reconstruction_distance(ToyRave(dims=dims), audio)
        t = time.process_time()
        model = train(dims, audio, steps, seed=a.seed, log=lambda m: print(m, flush=True))
        minutes = (time.process_time() - t) / 60
        export(model, out / name)
        trained = reconstruction_distance(torch.jit.load(str(out / name)), audio)
        print(f"{name}: {steps} steps, {minutes:.1f} CPU minutes; spectral distance of "
              f"decode(encode(loop)): trained {trained:.4f}, untrained {untrained:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
