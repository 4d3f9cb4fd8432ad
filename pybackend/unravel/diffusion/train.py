"""Training a diffusion model on a folder of latents (the Flex'ed recipe)."""

from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from unravel import audio as audio_io
from unravel.diffusion.checkpoint import (arch_from_name, load_checkpoint, read_checkpoint,
                                          save_checkpoint)
from unravel.diffusion.prepare import MIN_TRAIN_LENGTH, load_latent_folder
from unravel.diffusion.values import check_seed
from unravel.diffusion.vdiffusion import DiffusionModel, total_factor
from unravel.errors import UnravelError, first_line


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: torch.Tensor,
              order: Sequence[int], batch_size: int, accumulation_steps: int,
              noise_std: float = 0.0) -> float:
    """One training epoch over data[order] in batches; returns the mean batch loss.

    Gradients of `accumulation_steps` consecutive batches are averaged into one optimizer
    step; a last, shorter group still makes its step (no batch is dropped).
    """
    model.train()
    batches = [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
    total = 0.0
    for g in range(0, len(batches), accumulation_steps):
        group = batches[g:g + accumulation_steps]
        optimizer.zero_grad(set_to_none=True)
        for b in group:
            x = data[b]
            if noise_std > 0:
                x = x + torch.randn_like(x) * noise_std
            loss = model(x)
            (loss / len(group)).backward()
            total += loss.item()
        optimizer.step()
    return total / len(batches)


def train(latent_dir: str | os.PathLike, out_dir: str | os.PathLike, arch: str | dict = "small",
          name: str = "diffusion", batch_size: int = 8, accumulation_steps: int = 2,
          lr: float = 1e-4, weight_decay: float = 1e-4, scheduler_steps: int = 100,
          gamma: float = 0.99, noise_std: float = 0.1, patience: int = 200,
          max_epochs: int = 25000, max_minutes: float | None = None, split_ratio: float = 0.8,
          save_interval: int = 100, resume: str | os.PathLike | None = None,
          finetune: str | os.PathLike | None = None, seed: int = 664, force: bool = False,
          optimizer_state: bool = True, progress: bool = True) -> dict:
    """Train a diffusion model on a folder of (1, D, L) latents (the Flex'ed recipe).

    AdamW(lr, weight_decay), StepLR(scheduler_steps, gamma) per epoch (finetune: cosine
    annealing to 1e-6 over scheduler_steps), Gaussian noise_std augmentation of the training
    latents, gradient accumulation over `accumulation_steps` batches (the last, shorter
    group of an epoch included, each batch's loss weighted equally), early stop after
    `patience` epochs without a better validation loss (measured with the same sigmas and
    noise every epoch, so epochs compare; the training random stream is left untouched). Writes `<name>_best.pt` (best
    validation loss) and `<name>_last.pt` (every save_interval epochs and at the end).
    `resume` continues a run (weights, optimizer, scheduler, epoch); `finetune` starts
    from a checkpoint's weights with a fresh optimizer. `optimizer_state=False` writes empty
    optimizer/scheduler states (a third of the size; such a checkpoint cannot be resumed).
    Returns a summary dict.
    """
    for value, label in ((batch_size, "batch_size"), (accumulation_steps, "accumulation_steps"),
                         (scheduler_steps, "scheduler_steps"), (patience, "patience"),
                         (max_epochs, "max_epochs"), (save_interval, "save_interval")):
        if value < 1:
            raise UnravelError(f"{label} must be at least 1, got {value}")
    if not 0 < split_ratio <= 1:
        raise UnravelError(f"split_ratio must be in (0, 1], got {split_ratio}")
    if noise_std < 0 or lr <= 0 or weight_decay < 0:
        raise UnravelError("noise_std and weight_decay must be >= 0 and lr > 0")
    if resume is not None and finetune is not None:
        raise UnravelError("give --resume or --finetune, not both")
    seed = check_seed(seed)
    name = audio_io.check_name(name, "name")
    data, names = load_latent_folder(latent_dir)
    n, dims, length = data.shape
    if length < MIN_TRAIN_LENGTH:
        raise UnravelError(f"{latent_dir}: latent length {length} is below {MIN_TRAIN_LENGTH} "
                           f"(prepare with --latent-length {MIN_TRAIN_LENGTH} or more)")
    folder = audio_io.check_writable_dir(out_dir)
    best_path, last_path = folder / f"{name}_best.pt", folder / f"{name}_last.pt"
    if not force and resume is None:
        for p in (best_path, last_path):
            if p.exists():
                raise UnravelError(f"{p}: already exists (use --force to overwrite, or --resume)")

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
    else:
        arch_dict, arch_source = arch_from_name(arch, length)
        model = DiffusionModel(dims, **arch_dict)
    factor = total_factor(arch_dict)
    if length % factor:
        raise UnravelError(f"latent length {length} is not a multiple of the architecture's "
                           f"downsampling {factor}")

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
        _log(f"train-diffusion: {n} file(s): validating on the training latents (no augmentation)")
    params = sum(p.numel() for p in model.net.parameters())
    _log(f"train-diffusion: {len(train_idx)} training / {len(val_idx) if val_idx is not train_idx else 0} "
         f"validation latents of shape ({dims}, {length}); architecture from {arch_source}; "
         f"{params} parameters")

    options = {"arch_source": arch_source, "batch_size": batch_size,
               "accumulation_steps": accumulation_steps, "lr": lr, "weight_decay": weight_decay,
               "scheduler_steps": scheduler_steps, "gamma": gamma, "noise_std": noise_std,
               "patience": patience, "split_ratio": split_ratio, "seed": seed,
               "latent_dir": str(latent_dir), "finetune": str(finetune) if finetune else None}
    stale, epoch, train_loss, val_loss = 0, start_epoch - 1, math.nan, math.nan
    t0 = time.monotonic()
    stop_reason = "max epochs"

    def save(path: Path) -> Path:
        return save_checkpoint(path, model, length, epoch, optimizer if optimizer_state else None,
                               scheduler if optimizer_state else None, extra={
            "best_val_loss": best_loss, "train_loss": train_loss, "val_loss": val_loss,
            "training": options}, force=True)

    from tqdm import tqdm
    bar = tqdm(range(start_epoch, max_epochs), desc="train", unit="epoch", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    for epoch in bar:
        perm = [train_idx[i] for i in torch.randperm(len(train_idx)).tolist()]
        train_loss = run_epoch(model, optimizer, data, perm, batch_size, accumulation_steps, noise_std)
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the same sigmas and noise every epoch: comparable losses
            vb = [val_idx[i:i + batch_size] for i in range(0, len(val_idx), batch_size)]
            val_loss = sum(model(data[b]).item() for b in vb) / len(vb)
        scheduler.step()
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=f"{min(best_loss, val_loss):.4f}")
        if not progress:
            _log(f"epoch {epoch + 1}: train loss {train_loss:.5f}, validation loss {val_loss:.5f}")
        if val_loss < best_loss:
            best_loss, stale = val_loss, 0
            save(best_path)
        else:
            stale += 1
        if (epoch + 1) % save_interval == 0:
            save(last_path)
        if stale >= patience:
            stop_reason = f"no better validation loss for {patience} epochs"
            break
        if max_minutes is not None and time.monotonic() - t0 > max_minutes * 60:
            stop_reason = f"time limit {max_minutes:g} min"
            break
    bar.close()
    if epoch < start_epoch:
        raise UnravelError(f"{resume}: already trained {start_epoch} epochs (max_epochs {max_epochs})")
    save(last_path)
    summary = {"best": str(best_path), "last": str(last_path), "epochs": epoch + 1,
               "best_val_loss": best_loss, "train_loss": train_loss, "val_loss": val_loss,
               "stopped": stop_reason, "minutes": round((time.monotonic() - t0) / 60, 2)}
    _log(f"train-diffusion: stopped after epoch {epoch + 1} ({stop_reason}); best validation "
         f"loss {best_loss:.5f}; last train loss {train_loss:.5f}")
    return summary
