"""The v-diffusion U-Net of RAVE-Latent-Diffusion, in audio-diffusion-pytorch 0.1.3's module layout.

`DiffusionModel` holds one UNetV0 (built from a-unet blocks) under three names, `net`,
`diffusion.net` and `sampler.net`, so its state dict has the same keys as the reference
checkpoints. `VDiffusion` is the training loss, `VSampler` the sampling loop.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from unravel.errors import UnravelError

# DiffusionModel keyword arguments that describe the U-Net (besides in_channels).
ARCH_KEYS = ("channels", "factors", "items", "attentions", "attention_heads",
             "attention_features", "modulation_features", "resnet_groups")
LIST_KEYS = ("channels", "factors", "items", "attentions")
DEFAULTS = {"modulation_features": 1024, "resnet_groups": 8}

# RAVE-Latent-Diffusion (original), latent length 4096.
ORIGINAL_ARCH = {
    "channels": [256, 256, 256, 256, 512, 512, 512, 768, 768],
    "factors": [1, 4, 4, 4, 2, 2, 2, 2, 2],
    "items": [1, 2, 2, 2, 2, 2, 2, 4, 4],
    "attentions": [0, 0, 0, 0, 0, 1, 1, 1, 1],
    "attention_heads": 12,
    "attention_features": 64,
}


def _flex(channels: list[int], factors: list[int], items: list[int], attentions: list[int]) -> dict:
    return {"channels": channels, "factors": factors, "items": items, "attentions": attentions,
            "attention_heads": 12, "attention_features": 64}


# The Flex'ed fork's presets, by latent length.
FLEX_PRESETS: dict[int, dict] = {
    256: _flex([256, 256, 256, 512, 512], [1, 2, 2, 2, 2], [1, 2, 2, 2, 4], [0, 0, 0, 1, 1]),
    512: _flex([256, 256, 256, 256, 512, 512], [1, 2, 2, 2, 2, 2], [1, 2, 2, 2, 2, 4],
               [0, 0, 0, 0, 1, 1]),
    1024: _flex([256, 256, 256, 256, 512, 512, 512], [1, 4, 4, 4, 2, 2, 2], [1, 2, 2, 2, 2, 2, 4],
                [0, 0, 0, 0, 1, 1, 1]),
    2048: _flex([256, 256, 256, 256, 512, 512, 512, 768], [1, 4, 4, 4, 2, 2, 2, 2],
                [1, 2, 2, 2, 2, 2, 2, 4], [0, 0, 0, 0, 0, 1, 1, 1]),
    4096: dict(ORIGINAL_ARCH),
    8192: _flex([256, 256, 256, 256, 512, 512, 512, 768, 768, 768], [1, 4, 4, 4, 2, 2, 2, 2, 2, 2],
                [1, 2, 2, 2, 2, 2, 2, 4, 4, 4], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]),
    16384: _flex([256, 256, 256, 256, 512, 512, 512, 768, 768, 768, 768],
                 [1, 4, 4, 4, 2, 2, 2, 2, 2, 2, 2], [1, 2, 2, 2, 2, 2, 2, 4, 4, 4, 4],
                 [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]),
}

# Small architectures that train on a CPU (ours; not in the reference).
SMALL_PRESETS: dict[str, dict] = {
    "tiny": {"channels": [16, 16, 32], "factors": [1, 2, 2], "items": [1, 1, 1],
             "attentions": [0, 0, 1], "attention_heads": 2, "attention_features": 8,
             "modulation_features": 32},
    "small": {"channels": [32, 64, 64, 64], "factors": [1, 2, 2, 2], "items": [1, 2, 2, 2],
              "attentions": [0, 0, 1, 1], "attention_heads": 4, "attention_features": 16,
              "modulation_features": 64},
    "medium": {"channels": [64, 64, 128, 128], "factors": [1, 2, 2, 2], "items": [1, 2, 2, 2],
               "attentions": [0, 0, 1, 1], "attention_heads": 4, "attention_features": 32,
               "modulation_features": 128},
}


def check_arch(arch: dict, source: str) -> dict:
    """The architecture with defaults filled in; UnravelError naming `source` if it is invalid."""
    unknown = sorted(set(arch) - set(ARCH_KEYS))
    if unknown:
        raise UnravelError(f"{source}: unknown architecture key {unknown[0]!r} "
                           f"(known: {', '.join(ARCH_KEYS)})")
    missing = [k for k in LIST_KEYS if k not in arch]
    if missing:
        raise UnravelError(f"{source}: architecture lacks {missing[0]!r}")
    out = {**DEFAULTS, **arch}
    for key in LIST_KEYS:
        value = out[key]
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            raise UnravelError(f"{source}: {key} must be a list of non-negative integers")
        out[key] = [int(v) for v in value]
    n = len(out["channels"])
    if n == 0 or any(len(out[k]) != n for k in LIST_KEYS):
        raise UnravelError(f"{source}: channels, factors, items and attentions must have the "
                           f"same non-zero length")
    for key in ("modulation_features", "resnet_groups", "attention_heads", "attention_features"):
        value = out.get(key)
        if value is None and key.startswith("attention") and not any(out["attentions"]):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UnravelError(f"{source}: {key} must be a positive integer")
    if any(f < 1 for f in out["factors"]) or any(c < 1 for c in out["channels"]):
        raise UnravelError(f"{source}: factors and channels must be positive")
    bad = [c for c in out["channels"] if c % out["resnet_groups"]]
    if bad:
        raise UnravelError(f"{source}: channels {bad[0]} is not a multiple of resnet_groups "
                           f"{out['resnet_groups']}")
    return out


def total_factor(arch: dict) -> int:
    """The U-Net's total downsampling: latent lengths must be multiples of it."""
    return math.prod(arch["factors"])


def unet_v0(in_channels: int, channels: Sequence[int], factors: Sequence[int],
            items: Sequence[int], attentions: Sequence[int], attention_heads: int | None = None,
            attention_features: int | None = None, modulation_features: int = 1024,
            resnet_groups: int = 8) -> nn.Module:
    """audio-diffusion-pytorch 0.1.3's UNetV0 (1-D, time-conditioned, modulated, no context)."""
    try:
        from a_unet import TimeConditioningPlugin
        from a_unet.apex import (AttentionItem, ModulationItem, ResnetItem, SkipModulate, XBlock,
                                 XUNet)
    except ImportError as e:
        raise UnravelError(f"latent diffusion needs the a-unet package ({e}): "
                           f"pip install 'unravel[diffusion]'") from None

    blocks = []
    for ch, factor, n, att in zip(channels, factors, items, attentions):
        level = [ResnetItem, ModulationItem] + [AttentionItem] * att
        blocks.append(XBlock(channels=ch, factor=factor, context_channels=0, items=level * n))
    unet_t = TimeConditioningPlugin(XUNet)
    return unet_t(dim=1, in_channels=in_channels, out_channels=None, blocks=blocks,
                  skip_t=SkipModulate, attention_features=attention_features,
                  attention_heads=attention_heads, embedding_features=None,
                  modulation_features=modulation_features, resnet_groups=resnet_groups)


def alpha_beta(sigmas: Tensor) -> tuple[Tensor, Tensor]:
    """Signal and noise weights (cos, sin of sigma * pi/2)."""
    angle = sigmas * math.pi / 2
    return torch.cos(angle), torch.sin(angle)


class TracedNet:
    """The U-Net run as TorchScript traces, one per input shape, dtype and device.

    a-unet's forward is hundreds of small Python modules; at the bundled checkpoint's size
    their overhead is over half of a call. A trace (torch.jit.trace of the forward as a
    function, the weights as constants that share the modules' tensors, so in-place updates
    show) runs the same aten ops without it, under the plain interpreter
    (optimized_execution off: no fusion), so its outputs are bit-equal to the module's.
    On the bundled checkpoint a trace takes about 35 eager calls' time and holds about 20 MB;
    up to MAX_TRACES are kept, all dropped when the weights move (.to, new tensors).
    """

    MAX_TRACES = 4

    def __init__(self, net: nn.Module):
        self.net = net
        self.weights: tuple = ()    # what the traces were made with
        self.traces: dict[tuple, Callable] = {}

    def function(self, x: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """net(x, sigmas) for inputs shaped like x (B, D, L) and float sigmas (B,), traced
        on first use."""
        tensors = [*self.net.parameters(), *self.net.buffers()]
        weights = tuple((t.data_ptr(), t.dtype, t.device) for t in tensors) + (self.net.training,)
        if weights != self.weights:
            self.traces.clear()
            self.weights = weights
        key = (tuple(x.shape), x.dtype, x.device)
        traced = self.traces.get(key)
        if traced is None:
            if len(self.traces) >= self.MAX_TRACES:
                self.traces.clear()
            sigmas = torch.ones(x.shape[0], device=x.device)
            traced = self.traces[key] = self._trace(x, sigmas)

        def run(x: Tensor, sigmas: Tensor) -> Tensor:
            with torch.jit.optimized_execution(False):
                return traced(x, sigmas)
        return run

    def _trace(self, x: Tensor, sigmas: Tensor) -> Callable:
        """A trace of the net for inputs like (x, sigmas), in a compilation unit of its own:
        torch.jit.trace keeps every traced function in a process-wide unit (~20 MB each,
        never freed); this one goes when the trace does (torch's internal tracing API, as
        torch.jit.trace itself calls it; torch is pinned)."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        try:   # a trace refuses weights that require grad as constants
            for p in params:
                p.requires_grad_(False)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")   # TracerWarnings: shapes are per trace
                graph, _ = torch._C._create_graph_by_tracing(
                    lambda a, b: self.net(a, b), [x, sigmas], lambda _value: "", True, False)
        finally:
            for p in params:
                p.requires_grad_(True)
        holder = torch._C.Graph()        # each node's source range is the Python stack as
        blank = holder.create("prim::Constant")   # text: ~2 KB a node, a quarter of the trace
        for node in graph.nodes():
            node.copyMetadata(blank)
        return torch._C.CompilationUnit().create_function("unet", graph)


class VDiffusion(nn.Module):
    """The v-objective training loss: sigma ~ U(0, 1) per item, MSE against the velocity."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, sigmas: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """The loss of a batch; `sigmas` (B,) and `noise` (like x) are drawn here unless given."""
        if sigmas is None:
            sigmas = torch.rand(x.shape[0], device=x.device)
        alphas, betas = alpha_beta(sigmas.view(-1, *([1] * (x.ndim - 1))))
        if noise is None:
            noise = torch.randn_like(x)
        x_noisy = alphas * x + betas * noise
        v_target = alphas * noise - betas * x
        return nn.functional.mse_loss(self.net(x_noisy, sigmas), v_target)


class LinearSchedule(nn.Module):
    """Sigmas from 1 to 0, evenly spaced (no parameters)."""

    def forward(self, num: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.linspace(1.0, 0.0, num, device=device)


class VSampler(nn.Module):
    """The v-diffusion sampler: `num_steps` steps over `num_steps + 1` linear sigmas."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.schedule = LinearSchedule()

    @torch.inference_mode()
    def forward(self, x: Tensor, num_steps: int, on_step: Callable[[int], None] | None = None,
                net: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
        """Denoise x (B, D, L); `on_step(i)` is called after each step; `net` runs the
        network instead of self.net (the same function, e.g. a TracedNet's)."""
        net = self.net if net is None else net
        sigmas = self.schedule(num_steps + 1, x.device)
        alphas, betas = alpha_beta(sigmas)
        batch = [s.expand(x.shape[0]) for s in sigmas]  # the sigma the net sees, per item
        for i in range(num_steps):
            v = net(x, batch[i])
            x_pred = alphas[i] * x - betas[i] * v
            noise_pred = betas[i] * x + alphas[i] * v
            x = alphas[i + 1] * x_pred + betas[i + 1] * noise_pred
            if on_step is not None:
                on_step(i)
        return x


class QuadraticSchedule(nn.Module):
    """Sigmas 1 - (i/N)^2 from 1 to 0: more steps at the noisy end, where the v-prediction
    moves most (on the bundled checkpoint the closest to the 100-step reference output at
    10 and 20 steps of the schedules tried: linear, powers 1.5 to 6, uniform in log-SNR)."""

    def forward(self, num: int, device: torch.device | str = "cpu") -> Tensor:
        return 1.0 - torch.linspace(0.0, 1.0, num, device=device) ** 2


class DPMSampler(nn.Module):
    """DPM-Solver++(2M) for the v-objective (Lu et al. 2022, "DPM-Solver++: Fast Solver for
    Guided Sampling of Diffusion Probabilistic Models", multistep second order, Algorithm 2).

    With alpha = cos(sigma pi/2), beta = sin(sigma pi/2) and lambda = log(alpha / beta), the
    net's data prediction is D = alpha x - beta v. One step from sigma_{i-1} to sigma_i:
        x_i = (beta_i / beta_{i-1}) x - alpha_i (exp(-h_i) - 1) D',   h_i = lambda_i - lambda_{i-1},
    where D' = D_{i-1} on the first step (first order: VSampler's DDIM step) and, with the
    previous prediction and r = h_{i-1} / h_i, D' = (1 + 1/(2r)) D_{i-1} - 1/(2r) D_{i-2}
    after it. The last step, to sigma 0, is first order (lower order final): x = D.
    Sigmas follow QuadraticSchedule; `num_steps` net calls.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.schedule = QuadraticSchedule()

    @torch.inference_mode()
    def forward(self, x: Tensor, num_steps: int, on_step: Callable[[int], None] | None = None,
                net: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
        """Denoise x (B, D, L) in `num_steps` net calls; `on_step(i)` is called after each
        step; `net` runs the network instead of self.net."""
        net = self.net if net is None else net
        sigmas = self.schedule(num_steps + 1, x.device)
        a, b = alpha_beta(sigmas.double())
        alphas, betas = a.tolist(), b.tolist()
        lambdas = (torch.log(a) - torch.log(b)).tolist()   # ~-37 at sigma 1 (cos rounds), +inf at 0
        batch = [s.expand(x.shape[0]) for s in sigmas]      # the sigma the net sees, per item
        previous = None       # (D_{i-2}, h_{i-1})
        for i in range(1, num_steps + 1):
            v = net(x, batch[i - 1])
            d = alphas[i - 1] * x - betas[i - 1] * v
            if i == num_steps:                 # to sigma 0 (first order): the data prediction
                x = d
            else:
                h = lambdas[i] - lambdas[i - 1]
                d_used = d
                if previous is not None:
                    r = previous[1] / h
                    d_used = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * previous[0]
                x = (betas[i] / betas[i - 1]) * x - alphas[i] * math.expm1(-h) * d_used
                previous = (d, h)
            if on_step is not None:
                on_step(i - 1)
        return x


SAMPLERS = {"v": VSampler, "dpm": DPMSampler}


class DiffusionModel(nn.Module):
    """UNetV0 + VDiffusion + VSampler sharing one network (reference state-dict layout)."""

    def __init__(self, in_channels: int, **arch):
        super().__init__()
        arch = check_arch(arch, "diffusion architecture")
        self.in_channels = in_channels
        self.arch = arch
        self.net = unet_v0(in_channels, **arch)
        self.diffusion = VDiffusion(self.net)
        self.sampler = VSampler(self.net)
        self.traced = TracedNet(self.net)   # what sample() runs: the same numbers, faster

    def forward(self, x: Tensor, sigmas: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """The training loss for a batch of latents (B, D, L) (sigmas and noise: see VDiffusion)."""
        return self.diffusion(x, sigmas, noise)

    def sample(self, noise: Tensor, num_steps: int,
               on_step: Callable[[int], None] | None = None, sampler: str = "v") -> Tensor:
        """Latents (B, D, L) denoised from `noise` in `num_steps` steps; `sampler` is 'v'
        (the reference's VSampler) or 'dpm' (DPMSampler)."""
        if sampler not in SAMPLERS:
            raise UnravelError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        run = self.sampler if sampler == "v" else SAMPLERS[sampler](self.net)
        return run(noise, num_steps, on_step, net=self.traced.function(noise))
