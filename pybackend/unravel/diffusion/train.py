"""Training a diffusion model on a folder of latents (the Flex'ed recipe)."""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from unravel import audio as audio_io
from unravel import device as device_io
from unravel import limits
from unravel import safewrite
from unravel.diffusion.checkpoint import (arch_from_name, load_checkpoint, read_checkpoint,
                                          save_checkpoint)
from unravel.diffusion.prepare import load_latent_folder
from unravel.diffusion.vdiffusion import EXTRA_NOISE, DiffusionModel, total_factor
from unravel.settings import Settings
from unravel.errors import UnravelError, first_line


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


Draws = Callable[[Sequence[int]], "tuple[torch.Tensor, torch.Tensor, torch.Tensor]"]


def sample_draws(seed: int, epoch: int, dims: int, length: int) -> Draws:
    """The random numbers of training, per latent: `draws(indices)` gives the sigmas (B,),
    the diffusion noise (B, D, L: randn + EXTRA_NOISE * randn, as the pinned fork trains) and
    the augmentation noise (B, D, L) of those latents.

    Each latent's numbers depend only on (seed, epoch, its index), drawn on the CPU: any
    split of a batch over processes or devices sees the same numbers (epoch -1: validation,
    the same every epoch so that epochs compare).
    """
    def draws(indices: Sequence[int]):
        sig, noise, aug = [], [], []
        for i in indices:
            key = np.random.SeedSequence([seed, epoch + 1, int(i)]).generate_state(1, np.uint64)[0]
            g = torch.Generator().manual_seed(int(key) & 0x7FFF_FFFF_FFFF_FFFF)
            sig.append(torch.rand(1, generator=g))
            first = torch.randn(dims, length, generator=g)
            noise.append(first + EXTRA_NOISE * torch.randn(dims, length, generator=g))
            aug.append(torch.randn(dims, length, generator=g))
        return torch.cat(sig), torch.stack(noise), torch.stack(aug)
    return draws


def run_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: torch.Tensor,
              order: Sequence[int], batch_size: int, accumulation_steps: int,
              noise_std: float = 0.0, draws: Draws | None = None,
              device: torch.device | None = None, precision: str = "32",
              scaler: torch.amp.GradScaler | None = None) -> float:
    """One training epoch over data[order] in batches; returns the mean batch loss.

    Gradients of `accumulation_steps` consecutive batches are averaged into one optimizer
    step; a last, shorter group still makes its step (no batch is dropped). With `draws`
    (see sample_draws) the model is called as model(x, sigmas, noise) with those numbers;
    without, as model(x) (its own random numbers). The batches go to `device` and run under
    autocast in `precision`; a DistributedDataParallel model all-reduces the gradients once
    per optimizer step.
    """
    from torch.nn.parallel import DistributedDataParallel
    model.train()
    dev = device or data.device
    batches = [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
    total = 0.0
    for g in range(0, len(batches), accumulation_steps):
        group = batches[g:g + accumulation_steps]
        optimizer.zero_grad(set_to_none=True)
        for j, b in enumerate(group):
            x = data[b]
            if draws is None:
                if noise_std > 0:
                    x = x + torch.randn_like(x) * noise_std
                args = (x.to(dev),)
            else:
                sigmas, noise, aug = draws(b)
                if noise_std > 0:
                    x = x + aug * noise_std
                args = (x.to(dev), sigmas.to(dev), noise.to(dev))
            last = j == len(group) - 1
            hold = isinstance(model, DistributedDataParallel) and not last
            with model.no_sync() if hold else contextlib.nullcontext():
                with device_io.autocast(dev, precision):
                    loss = model(*args)
                scaled = loss.float() / len(group)
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            total += loss.item()
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    return total / len(batches)


def validate(model: torch.nn.Module, data: torch.Tensor, val_idx: Sequence[int], batch_size: int,
             draws: Draws, device: torch.device, precision: str = "32", rank: int = 0,
             world: int = 1) -> float:
    """The mean loss per validation latent, with the same numbers every epoch (`draws`); each
    of `world` processes takes every world-th latent and the sums are all-reduced, so every
    process gets the same value."""
    mine = list(val_idx[rank::world])
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(mine), batch_size):
            b = mine[i:i + batch_size]
            sigmas, noise, _ = draws(b)
            with device_io.autocast(device, precision):
                loss = model(data[b].to(device), sigmas.to(device), noise.to(device))
            total += loss.item() * len(b)
            count += len(b)
    if world > 1:
        t = torch.tensor([total, count], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        total, count = t.tolist()
    return total / count


@dataclass
class Ranks:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    started_here: bool = False  # this call started the process group (and ends it)

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_setup(device: str | torch.device = "cpu") -> Ranks:
    """Join the torchrun job when WORLD_SIZE > 1 (NCCL on CUDA, gloo on the CPU); each
    process takes GPU LOCAL_RANK. Without torchrun: rank 0 of 1 on `device`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = device_io.resolve(device)
    if world <= 1:
        return Ranks(0, 1, dev)
    if dev.type == "mps":
        raise UnravelError("distributed training runs on CUDA GPUs (NCCL) or CPUs (gloo), not mps")
    import torch.distributed as dist
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise UnravelError(f"LOCAL_RANK {local}: this machine has {torch.cuda.device_count()} GPU(s); "
                               f"start at most that many processes per node")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    started = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        started = True
    return Ranks(dist.get_rank(), dist.get_world_size(), dev, started)


def _agree(flag: bool, ranks: Ranks) -> bool:
    """Rank 0's decision, on every rank."""
    if ranks.world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ranks.device)
    torch.distributed.broadcast(t, 0)
    return bool(t.item())


GAMMA = 0.99    # the learning rate's decay per scheduler_steps epochs


def train(s: Settings, progress: bool = True, device: str | torch.device = "cpu") -> dict:
    """Train a diffusion model on a folder of (1, D, L) latents (the Flex'ed recipe).

    `s`: the settings (`operations.TRAIN`: the latent folder, the output folder, ...).
    AdamW(lr, weight_decay), StepLR(scheduler_steps, GAMMA) per epoch (finetune: cosine
    annealing to 1e-6 over scheduler_steps), Gaussian noise_std augmentation of the training
    latents, gradient accumulation over `accumulation_steps` batches (the last, shorter
    group of an epoch included, each batch's loss weighted equally), early stop after
    `patience` epochs without a better validation loss (measured with the same sigmas and
    noise every epoch, so epochs compare; the training random stream is left untouched). Writes `<name>_best.pt` (best
    validation loss) and `<name>_last.pt` (every save_interval epochs and at the end).
    `resume` continues a run (weights, optimizer, scheduler, epoch); `finetune` starts
    from a checkpoint's weights with a fresh optimizer. `no_optimizer_state` writes empty
    optimizer/scheduler states (a third of the size; such a checkpoint cannot be resumed).

    Runs on `device` with autocast in `precision` (32, 16-mixed with a loss scaler,
    bf16-mixed); the weights stay float32 and checkpoints hold CPU tensors. Under torchrun
    (WORLD_SIZE > 1) every process trains its share with DistributedDataParallel (see
    distributed_setup): a DistributedSampler reshuffled every epoch with the seed gives each
    rank `batch_size` latents per batch, gradients and validation losses are averaged over
    the ranks, rank 0 alone writes checkpoints and logs, and every rank stops at the same
    epoch. The random numbers of each latent depend only on (seed, epoch, latent), so N
    ranks x batch b take the same steps as one process x batch N*b, and a run resumes with
    any number of ranks. Returns a summary dict.
    """
    latent_dir, resume = s.latents, s.resume
    precision = device_io.check_precision(s.precision)
    name = audio_io.check_name(s.name, "name")
    data, names = load_latent_folder(latent_dir)
    n, dims, length = data.shape
    if length < limits.MIN_TRAIN_LENGTH:
        raise UnravelError(f"{latent_dir}: latent length {length} is below {limits.MIN_TRAIN_LENGTH} "
                           f"(prepare with --latent-length {limits.MIN_TRAIN_LENGTH} or more)")
    folder = safewrite.check_writable_dir(s.output)
    best_path, last_path = folder / f"{name}_best.pt", folder / f"{name}_last.pt"
    if not s.force and resume is None:
        for p in (best_path, last_path):
            if p.exists():
                raise UnravelError(f"{p}: already exists (use --force to overwrite, or --resume)")

    ranks = distributed_setup(device)
    try:
        return _train(ranks, data, latent_dir, folder, best_path, last_path, s.arch, s.batch_size,
                      s.accumulation_steps, s.lr, s.weight_decay, s.scheduler_steps, GAMMA,
                      s.noise_std, s.patience, s.max_epochs, s.max_minutes, s.split_ratio,
                      s.save_interval, resume, s.finetune, s.seed, not s.no_optimizer_state,
                      progress, precision)
    finally:
        if ranks.started_here:
            torch.distributed.destroy_process_group()


def training_memory(arch: dict, dims: int, length: int, batch: int) -> int:
    """Bytes a training step holds at its peak, estimated: the weights, their gradients and
    AdamW's two moments (counted on a model without storage), and the activations of a
    forward and backward pass (three times one sampling step's)."""
    from unravel.diffusion.sample import sampling_memory
    with torch.device("meta"):
        params = sum(p.numel() for p in DiffusionModel(dims, **arch).parameters())
    return 16 * params + 3 * sampling_memory(arch, dims, length, batch)


def check_training(arch: dict, dims: int, length: int, batch: int) -> None:
    """UnravelError, naming the batch size, when training cannot fit in memory."""
    limits.check_memory(training_memory(arch, dims, length, batch),
                        f"training on batches of {batch} x {length} latent frames",
                        "lower batch_size or choose a smaller arch")


def _train(ranks: Ranks, data: torch.Tensor, latent_dir, folder: Path, best_path: Path,
           last_path: Path, arch, batch_size: int, accumulation_steps: int, lr: float,
           weight_decay: float, scheduler_steps: int, gamma: float, noise_std: float,
           patience: int, max_epochs: int, max_minutes: float | None, split_ratio: float,
           save_interval: int, resume, finetune, seed: int, optimizer_state: bool,
           progress: bool, precision: str) -> dict:
    """The training loop of train(), in one process of `ranks`."""
    from torch.utils.data import DistributedSampler
    n, dims, length = data.shape
    dev = ranks.device
    device_io.deterministic(dev)
    log = _log if ranks.main else (lambda msg: None)
    torch.manual_seed(seed)
    start_epoch, start = 0, resume if resume is not None else finetune
    if start is not None:
        arch_file = arch if isinstance(arch, (str, os.PathLike)) and str(arch).endswith(".json") else None
        diffuser = load_checkpoint(start, arch_file)  # a stored architecture comes first
        model, arch_dict = diffuser.model, diffuser.arch
        if diffuser.dims != dims:
            raise UnravelError(f"{diffuser.path}: was trained on {diffuser.dims}-dim latents, "
                               f"{latent_dir} has {dims}")
        if resume is not None and diffuser.latent_length != length:
            raise UnravelError(f"{diffuser.path}: was trained with latent length "
                               f"{diffuser.latent_length}, {latent_dir} has {length}")
        arch_source = f"{diffuser.arch_source} ({diffuser.path})"
        check_training(arch_dict, dims, length, batch_size)
    else:
        arch_dict, arch_source = arch_from_name(arch, length)
        check_training(arch_dict, dims, length, batch_size)
        model = DiffusionModel(dims, **arch_dict)
    factor = total_factor(arch_dict)
    if length % factor:
        raise UnravelError(f"latent length {length} is not a multiple of the architecture's "
                           f"downsampling {factor}")

    model.to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if finetune is not None:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=scheduler_steps,
                                                               eta_min=1e-6)
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=scheduler_steps, gamma=gamma)
    best_loss = math.inf
    if resume is not None:
        obj = read_checkpoint(resume)
        try:
            optimizer.load_state_dict(obj["optimizer_state_dict"])
            scheduler.load_state_dict(obj["scheduler_state_dict"])
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise UnravelError(f"{resume}: cannot resume: optimizer or scheduler state missing or "
                               f"mismatched ({first_line(e)})") from None
        start_epoch = int(obj.get("epoch", -1)) + 1
        best_loss = float(obj.get("best_val_loss", math.inf))

    order = list(range(n))
    random.Random(seed).shuffle(order)
    split = min(n, max(1, int(n * split_ratio)))
    train_idx, val_idx = order[:split], order[split:]
    if not val_idx:
        val_idx = train_idx
        log(f"train-diffusion: {n} file(s): validating on the training latents (no augmentation)")
    params = sum(p.numel() for p in model.net.parameters())
    log(f"train-diffusion: {len(train_idx)} training / {len(val_idx) if val_idx is not train_idx else 0} "
        f"validation latents of shape ({dims}, {length}); architecture from {arch_source}; "
        f"{params} parameters; {device_io.name(dev)}, precision {precision}"
        + (f", {ranks.world} processes x batch {batch_size}" if ranks.world > 1 else ""))

    options = {"arch_source": arch_source, "batch_size": batch_size,
               "accumulation_steps": accumulation_steps, "lr": lr, "weight_decay": weight_decay,
               "scheduler_steps": scheduler_steps, "gamma": gamma, "noise_std": noise_std,
               "patience": patience, "split_ratio": split_ratio, "seed": seed,
               "latent_dir": str(latent_dir), "finetune": str(finetune) if finetune else None,
               "device": device_io.name(dev), "precision": precision, "world_size": ranks.world}
    stale, epoch, train_loss, val_loss = 0, start_epoch - 1, math.nan, math.nan
    t0 = time.monotonic()
    stop_reason = "max epochs"

    def save(path: Path) -> Path:
        return save_checkpoint(path, model, length, epoch, optimizer if optimizer_state else None,
                               scheduler if optimizer_state else None, extra={
            "best_val_loss": best_loss, "train_loss": train_loss, "val_loss": val_loss,
            "training": options}, force=True)

    net = model
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    scaler = device_io.grad_scaler(dev, precision)
    sampler = DistributedSampler(train_idx, num_replicas=ranks.world, rank=ranks.rank,
                                 shuffle=True, seed=seed)
    val_draws = sample_draws(seed, -1, dims, length)

    from tqdm import tqdm
    bar = tqdm(range(start_epoch, max_epochs), desc="train", unit="epoch", file=sys.stderr,
               disable=not (progress and ranks.main), dynamic_ncols=True)
    for epoch in bar:
        sampler.set_epoch(epoch)
        perm = [train_idx[i] for i in sampler]
        train_loss = run_epoch(net, optimizer, data, perm, batch_size, accumulation_steps, noise_std,
                               sample_draws(seed, epoch, dims, length), dev, precision, scaler)
        if ranks.world > 1:
            t = torch.tensor([train_loss], dtype=torch.float64, device=dev)
            torch.distributed.all_reduce(t)
            train_loss = float(t.item()) / ranks.world
        val_loss = validate(model, data, val_idx, batch_size, val_draws, dev, precision,
                            ranks.rank, ranks.world)
        scheduler.step()
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=f"{min(best_loss, val_loss):.4f}")
        if not progress:
            log(f"epoch {epoch + 1}: train loss {train_loss:.5f}, validation loss {val_loss:.5f}")
        if val_loss < best_loss:
            best_loss, stale = val_loss, 0
            if ranks.main:
                save(best_path)
        else:
            stale += 1
        if (epoch + 1) % save_interval == 0 and ranks.main:
            save(last_path)
        if stale >= patience:
            stop_reason = f"no better validation loss for {patience} epochs"
            break
        out_of_time = max_minutes is not None and time.monotonic() - t0 > max_minutes * 60
        if _agree(out_of_time, ranks):
            stop_reason = f"time limit {max_minutes:g} min"
            break
    bar.close()
    if epoch < start_epoch:
        raise UnravelError(f"{resume}: already trained {start_epoch} epochs (max_epochs {max_epochs})")
    if ranks.main:
        save(last_path)
    if ranks.world > 1:
        torch.distributed.barrier()  # the checkpoints are written when any rank returns
    summary = {"best": str(best_path), "last": str(last_path), "epochs": epoch + 1,
               "best_val_loss": best_loss, "train_loss": train_loss, "val_loss": val_loss,
               "stopped": stop_reason, "minutes": round((time.monotonic() - t0) / 60, 2),
               "rank": ranks.rank, "world_size": ranks.world}
    log(f"train-diffusion: stopped after epoch {epoch + 1} ({stop_reason}); best validation "
         f"loss {best_loss:.5f}; last train loss {train_loss:.5f}")
    return summary
