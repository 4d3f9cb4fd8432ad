"""Diffusion sampling: unravel's sampler vs. a direct reimplementation of the reference loop.

The baseline is what RAVE-Latent-Diffusion's generate script runs per seed: seed, draw
noise, then audio-diffusion-pytorch 0.1.3's VSampler loop under torch.no_grad (sigmas
repeated per batch item, alpha/beta tensors of shape (steps+1, b, 1, 1), a progress-bar
description per step), then the global z-score. Ours: unravel.diffusion.sample_seeds
(inference mode, the U-Net run as a cached TorchScript trace, several seeds in one forward
pass) and the same z-score. Same checkpoint, same steps, same seeds, same process, the same
device (`--device`, default cpu); prints time ratios (ours / reference, lower is better, best
of --repeats with the trace made), the first call's time (tracing included) and the peak
resident memory each adds in a fresh process (CPU runs, tracing included; on a GPU the peak
device memory).

Then the samplers' accuracy: from the same noise (--table-seeds seeds), the relative distance
|z - z_ref| / |z_ref| of the latents after 5, 10, 20, 50, 100 steps, for the reference sampler
('v') and DPM-Solver++(3M) ('dpm', --sampler dpm), to the reference sampler's 100-step latents
(the issue's measure; that output is itself ~1.5 % off the ODE's solution on the bundled
checkpoint) and to the converged solution, 2 v(2000) - v(1000).

    .venv/bin/python bench/diffusion.py [--checkpoint default] [--steps 20] [--seeds 4] [--device cpu]
        [--table-seeds 16 (0: timings only, seconds)] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import random
import subprocess
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from unravel import device as device_io
from unravel import diffusion


def reference_generate(net: torch.nn.Module, seeds: list[int], dims: int, length: int,
                       steps: int, device: torch.device = torch.device("cpu")) -> list[torch.Tensor]:
    """The reference: one seed at a time, VSampler's loop, normalize (noise drawn on the CPU,
    the loop on `device`)."""
    out = []
    for seed in seeds:
        with torch.no_grad():
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            x = (torch.randn(1, dims, length) * 1.0).to(device)
            b = x.shape[0]
            sigmas = torch.linspace(1.0, 0.0, steps + 1, device=device).unsqueeze(1).repeat(1, b)
            sigmas_batch = sigmas.view(*sigmas.shape, *((1,) * (x.ndim + 1 - sigmas.ndim)))
            angle = sigmas_batch * math.pi / 2
            alphas, betas = torch.cos(angle), torch.sin(angle)
            bar = tqdm(range(steps), disable=True)
            for i in bar:
                v = net(x, sigmas[i])
                x_pred = alphas[i] * x - betas[i] * v
                noise_pred = betas[i] * x + alphas[i] * v
                x = alphas[i + 1] * x_pred + betas[i + 1] * noise_pred
                bar.set_description(f"Sampling (noise={sigmas[i + 1, 0]:.2f})")
            out.append(((x - x.mean()) / x.std()).cpu())
    return out


def ours_generate(d: diffusion.Diffuser, seeds: list[int], steps: int, batch: int,
                  device: torch.device = torch.device("cpu")) -> list[torch.Tensor]:
    zs, _ = diffusion.sample_seeds(d, seeds, steps, batch=batch, device=device)
    return [diffusion.normalize(z) for z in zs]


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    raise KeyError(field)


def peak_mb(fn, device: torch.device = torch.device("cpu")) -> float:
    """Peak memory added while fn runs (MB): resident memory via the resettable high-water
    mark on the CPU, the allocator's peak on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return float("nan")
    base = _status("VmRSS")
    fn()
    return (_status("VmHWM") - base) / 1024


def _peak_in_fresh_process(args: argparse.Namespace, index: int) -> float:
    """Run variant `index` once in a new interpreter (so freed memory cached by earlier runs
    does not hide its peak) and return the peak it adds over the loaded checkpoint."""
    cmd = [sys.executable, __file__, "--checkpoint", str(args.checkpoint), "--steps", str(args.steps),
           "--seeds", str(args.seeds), "--batch", str(args.batch), "--device", args.device,
           "--peak", str(index)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="default")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seeds", type=int, default=4, help="seeds per run (ours batches them)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.add_argument("--table-seeds", type=int, default=16, help="seeds in the distance table (0: no table)")
    p.add_argument("--peak", type=int, help=argparse.SUPPRESS)  # internal: one variant's peak
    args = p.parse_args()
    torch.set_num_threads(1)

    dev = device_io.resolve(args.device)
    d = diffusion.load_checkpoint(args.checkpoint)
    d.model.to(dev)
    device_io.deterministic(dev)
    seeds = list(range(args.seeds))
    params = sum(t.numel() for t in d.model.net.parameters())
    if args.peak is None:
        print(f"checkpoint {d.path.name}: {params} parameters, {d.dims} dims x {d.latent_length} frames, "
              f"{args.steps} steps, {args.seeds} seeds, torch threads 1, device {device_io.name(dev)}")

    runs = {
        "reference loop": lambda: reference_generate(d.model.net, seeds, d.dims, d.latent_length,
                                                     args.steps, dev),
        f"ours (batch {args.batch})": lambda: ours_generate(d, seeds, args.steps, args.batch, dev),
        "ours (batch 1)": lambda: ours_generate(d, seeds, args.steps, 1, dev),
    }
    if args.peak is not None:
        fn = list(runs.values())[args.peak]
        print(peak_mb(fn, dev))
        return
    t = time.perf_counter()
    runs["ours (batch 1)"]()   # the first call traces the U-Net for this shape (once per process)
    device_io.synchronize(dev)
    first = time.perf_counter() - t
    ref = runs["reference loop"]()
    for name, fn in runs.items():  # the same latents (batch 1: bit for bit)
        diff = max((a - b).abs().max().item() for a, b in zip(ref, fn()))
        print(f"  {name:<18} max |z - z_ref| = {diff:.2e}")
    best = {name: math.inf for name in runs}
    for _ in range(args.repeats):  # interleaved, best of repeats
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            device_io.synchronize(dev)
            best[name] = min(best[name], time.perf_counter() - t)
    peaks = {name: _peak_in_fresh_process(args, i) for i, name in enumerate(runs)}
    base = best["reference loop"]
    print(f"{'run':<20} {'device':>7} {'seconds':>8} {'ratio':>7} {'peak MB':>8}")
    for name in runs:
        print(f"{name:<20} {device_io.name(dev):>7} {best[name]:>8.3f} {best[name] / base:>7.2f} "
              f"{peaks[name]:>8.1f}")
    print(f"ours (batch 1), first call: {first:.3f} s (tracing the U-Net included; "
          f"the peak MB above include it too)")
    if args.table_seeds:
        distance_table(d, list(range(args.table_seeds)), dev)


def distance_table(d: diffusion.Diffuser, seeds: list[int], dev: torch.device,
                   counts=(5, 10, 20, 50, 100), ref_steps: int = 100, fine_steps: int = 1000) -> None:
    """Relative distance |z - z_ref| / |z_ref| of each sampler's latents at `counts` steps,
    from the same noise (all seeds in one batch), to two references: the reference
    sampler's `ref_steps`-step output (the issue's measure), and the converged solution of
    the sampling ODE, estimated as 2 v(2 fine_steps) - v(fine_steps) (Richardson: the
    reference sampler is first order, so this cancels its leading error)."""
    noise = torch.cat([diffusion.make_noise(s, d.dims, d.latent_length) for s in seeds]).to(dev)
    ref = d.model.sample(noise, ref_steps)
    fine = d.model.sample(noise, fine_steps)
    conv = 2 * d.model.sample(noise, 2 * fine_steps) - fine

    def dist(z: torch.Tensor, to: torch.Tensor) -> float:
        return ((z - to).norm() / to.norm()).item()

    print(f"distance |z - z_ref| / |z_ref|, {len(seeds)} seeds; z_ref: the reference sampler's "
          f"{ref_steps}-step output ('to v{ref_steps}'), the converged solution ('to conv', "
          f"2 v({2 * fine_steps}) - v({fine_steps}))")
    print(f"  check: v({fine_steps}) to conv {dist(fine, conv):.4f}, dpm(200) to conv "
          f"{dist(d.model.sample(noise, 200, sampler='dpm'), conv):.4f}, v({ref_steps}) to conv "
          f"{dist(ref, conv):.4f}")
    print(f"{'steps':>6} {'v to v' + str(ref_steps):>10} {'dpm to v' + str(ref_steps):>12} "
          f"{'v to conv':>10} {'dpm to conv':>12}")
    for n in counts:
        z = {s: d.model.sample(noise, n, sampler=s) for s in ("v", "dpm")}
        print(f"{n:>6} {dist(z['v'], ref):>10.4f} {dist(z['dpm'], ref):>12.4f} "
              f"{dist(z['v'], conv):>10.4f} {dist(z['dpm'], conv):>12.4f}")


if __name__ == "__main__":
    main()
