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

from unravel import limits
from unravel.errors import UnravelError

# DiffusionModel keyword arguments that describe the U-Net (besides in_channels).
ARCH_KEYS = ("channels", "factors", "items", "attentions", "attention_heads",
             "attention_features", "modulation_features", "resnet_groups")
LIST_KEYS = ("channels", "factors", "items", "attentions")
DEFAULTS = {"modulation_features": 1024, "resnet_groups": 8}
# Training noise: a standard normal plus EXTRA_NOISE times another, as the fork that
# RAVE-Latent-Diffusion and Flex'ed install trains (moiseshorta/audio-diffusion-pytorch
# c2fdd66, audio_diffusion_pytorch/diffusion.py, VDiffusion.forward).
EXTRA_NOISE = 0.1

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
    if n > limits.MAX_ARCH_LEVELS:
        raise UnravelError(f"{source}: {n} levels, more than the {limits.MAX_ARCH_LEVELS} allowed")
    if sum(out["items"]) > limits.MAX_ARCH_BLOCKS:
        raise UnravelError(f"{source}: {sum(out['items'])} items, more than the "
                           f"{limits.MAX_ARCH_BLOCKS} allowed")
    numbers = [v for k in LIST_KEYS for v in out[k]] + [
        v for k, v in out.items() if k not in LIST_KEYS and isinstance(v, int)]
    if max(numbers) > limits.MAX_ARCH_VALUE:
        raise UnravelError(f"{source}: a value of {max(numbers)}, more than the "
                           f"{limits.MAX_ARCH_VALUE} an architecture may have")
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
    their overhead is over half of a call. A trace (torch.jit's tracer run on the forward as
    a function, the weights as constants that share the modules' tensors, so in-place
    updates show) runs the same aten ops without it, under the plain interpreter
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
    """The v-objective training loss: sigma ~ U(0, 1) per item, MSE against the velocity; the
    noise randn + EXTRA_NOISE * randn, as the pinned fork draws it."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, sigmas: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """The loss of a batch; `sigmas` (B,) and `noise` (like x) are drawn here unless given."""
        if sigmas is None:
            sigmas = torch.rand(x.shape[0], device=x.device)
        alphas, betas = alpha_beta(sigmas.view(-1, *([1] * (x.ndim - 1))))
        if noise is None:
            noise = torch.randn_like(x) + EXTRA_NOISE * torch.randn_like(x)
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


class LogSNRSchedule(nn.Module):
    """Sigma 1, then N - 1 sigmas evenly spaced in log-SNR lambda = log(alpha / beta) from
    CENTER - WIDTH log(N - 1) to CENTER + WIDTH log(N - 1), then sigma 0 (N + 1 values, float64;
    sigma = atan(exp(-lambda)) 2/pi). The ends spread as the steps grow, so the sampler
    converges; CENTER and WIDTH put 10 steps where the bundled checkpoint's data prediction
    moves (lambda about -4.5 to 1)."""

    CENTER = -1.0
    WIDTH = 1.2

    def forward(self, num: int, device: torch.device | str = "cpu") -> Tensor:
        spread = self.WIDTH * math.log(max(num - 2, 1))
        lambdas = torch.linspace(self.CENTER - spread, self.CENTER + spread, num - 2,
                                 dtype=torch.float64, device=device)
        inner = torch.atan(torch.exp(-lambdas)) * 2 / math.pi
        return torch.cat([inner.new_ones(1), inner, inner.new_zeros(1)])


class DPMSampler(nn.Module):
    """DPM-Solver++(3M) for the v-objective: the multistep data-prediction solver of Lu et al.
    2022 ("DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models"),
    third order, over LogSNRSchedule.

    With alpha = cos(sigma pi/2), beta = sin(sigma pi/2) and lambda = log(alpha / beta), the
    net's data prediction is D = alpha x - beta v and the probability-flow ODE solves to
        x_t = (beta_t / beta_s) x_s + beta_t  integral_{lambda_s}^{lambda_t} e^lambda D dlambda.
    A step from s = sigma_i to t = sigma_{i+1} (h = lambda_t - lambda_s) takes D as the
    polynomial in lambda through the last one to three predictions (D_i, D', D''), which
    integrates exactly:
        x_t = (beta_t / beta_s) x_s + alpha_t (psi0 D_i + psi1 D' + psi2 D''),
        psi0 = 1 - e^-h,  psi1 = h - psi0,  psi2 = h^2/2 - psi1.
    The ends are where the ODE is singular in lambda. From sigma 1 (lambda -inf, alpha 0)
    the first step is x_1 = beta_1 x + alpha_1 D_0 (D constant), and D_0, at lambda -inf,
    takes no part in later fits (the second step is first order, the third second order).
    The last step, to sigma 0 (lambda +inf), is taken in y = x / alpha over the
    noise-to-signal ratio r = beta / alpha, where dy/dr = eps = (x - alpha D) / beta is
    regular at r = 0: with eps linear in r through the last two steps,
        x_0 = D_{N-1} + (eps_{N-2} - eps_{N-1}) / (r_{N-2} - r_{N-1}) r_{N-1}^2 / 2.
    `num_steps` net calls (at least 1; with 1 the result is D_0).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.schedule = LogSNRSchedule()

    @torch.inference_mode()
    def forward(self, x: Tensor, num_steps: int, on_step: Callable[[int], None] | None = None,
                net: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
        """Denoise x (B, D, L) in `num_steps` net calls; `on_step(i)` is called after each
        step; `net` runs the network instead of self.net."""
        net = self.net if net is None else net
        sigmas = self.schedule(num_steps + 1, x.device)
        alphas = torch.cos(sigmas * math.pi / 2).tolist()
        betas = torch.sin(sigmas * math.pi / 2).tolist()
        alphas[0], betas[-1] = 0.0, 0.0                # exactly (cos(pi/2) rounds to 6e-17)
        lambdas = [math.log(a / b) if a > 0 and b > 0 else math.copysign(math.inf, a - b)
                   for a, b in zip(alphas, betas)]      # -inf at sigma 1, +inf at 0
        batch = [s.expand(x.shape[0]) for s in sigmas.float()]   # the sigma the net sees
        fits: list[tuple[float, Tensor]] = []          # (lambda, D) of the finite-lambda steps
        eps = None                                     # (ratio, eps) of the step before
        for i in range(num_steps):
            a, b = alphas[i], betas[i]
            d = a * x - b * net(x, batch[i])
            if i == num_steps - 1:                     # to sigma 0
                if eps is None:
                    x = d
                else:
                    ratio, e = b / a, (x - a * d) / b
                    x = d + (eps[1] - e) / (eps[0] - ratio) * (ratio * ratio / 2)
            elif i == 0:                               # from sigma 1
                x = betas[1] * x + alphas[1] * d
            else:
                eps = (b / a, (x - a * d) / b)
                fits = [*fits[-2:], (lambdas[i], d)]
                x = (betas[i + 1] / b) * x + alphas[i + 1] * _exp_integral(fits, lambdas[i + 1])
            if on_step is not None:
                on_step(i)
        return x


def _exp_integral(fits: list[tuple[float, Tensor]], lam_t: float) -> Tensor:
    """psi0 D + psi1 D' + psi2 D'' over [lambda_s, lam_t] for D the polynomial through
    `fits` [(lambda, D), ...] (1 to 3 points, the last at lambda_s): see DPMSampler."""
    lam_s, d = fits[-1]
    h = lam_t - lam_s
    psi0 = -math.expm1(-h)
    psi1 = h - psi0
    psi2 = h * h / 2 - psi1
    if len(fits) == 1:
        return psi0 * d
    lam_1, d1 = fits[-2]
    slope = (d - d1) / (lam_s - lam_1)
    if len(fits) == 2:
        return psi0 * d + psi1 * slope
    lam_2, d2 = fits[-3]
    curve = 2 * (slope - (d1 - d2) / (lam_1 - lam_2)) / (lam_s - lam_2)   # D''
    return psi0 * d + psi1 * (slope + curve * (lam_s - lam_1) / 2) + psi2 * curve


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
