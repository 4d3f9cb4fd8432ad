"""Diffusion training throughput: samples per second of `unravel train-diffusion` in one
process and under torchrun with 2 CPU processes (gloo), the same architecture and the same
global batch (2 ranks x batch b = 1 process x batch 2b); on a machine with CUDA also one GPU
and every GPU (NCCL).

Each setting runs 1 + EPOCHS epochs and is timed from the log line of the first epoch to
that of the last, so process start, imports and the first epoch's warm-up are left out.

    .venv/bin/python bench/train_scale.py [--arch small] [--latents 32] [--dims 8]
                                          [--length 256] [--batch 8] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def seconds_per_epoch(cmd: list[str], env: dict, epochs: int) -> float:
    """Run a train-diffusion command of 1 + epochs epochs; the seconds between the log lines
    of epoch 1 and of the last epoch, per epoch (start-up and the first epoch left out)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    stamps, tail = {}, []
    for line in proc.stderr:
        tail = (tail + [line])[-20:]
        if line.startswith("epoch "):
            stamps[int(line.split()[1].rstrip(":"))] = time.perf_counter()
    if proc.wait() or 1 not in stamps or 1 + epochs not in stamps:
        sys.exit(f"failed: {' '.join(cmd)}\n{''.join(tail)}")
    return (stamps[1 + epochs] - stamps[1]) / epochs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="small")
    p.add_argument("--latents", type=int, default=32, help="training latents (all of them trained on)")
    p.add_argument("--dims", type=int, default=8)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--batch", type=int, default=8, help="global batch (per step, over all processes)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="train-scale-"))
    lat = tmp / "lat"
    lat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(args.latents):
        np.save(lat / f"z{i:03d}.npy", rng.standard_normal((1, args.dims, args.length)).astype(np.float32))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLOO_SOCKET_IFNAME="lo")

    settings = [("cpu", 1), ("cpu", 2)]
    if torch.cuda.is_available():
        settings += [("cuda", 1)] + ([("cuda", torch.cuda.device_count())]
                                     if torch.cuda.device_count() > 1 else [])
    print(f"arch {args.arch}, {args.latents} latents of ({args.dims}, {args.length}), global batch "
          f"{args.batch}, {args.epochs} timed epochs, {args.threads} torch thread(s) per process, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'device':<8} {'processes':>9} {'batch/proc':>10} {'s/epoch':>9} {'samples/s':>10} {'speed-up':>9}")
    base = {}
    for device, nproc in settings:
        if args.batch % nproc:
            continue
        out = tmp / f"{device}{nproc}"
        train = ["train-diffusion", str(lat), "--arch", args.arch, "--split-ratio", "1",
                 "--batch-size", str(args.batch // nproc), "--accumulation-steps", "1",
                 "--device", device, "--threads", str(args.threads), "--force", "-o", str(out)]
        if nproc == 1:
            launch = [sys.executable, "-m", "unravel.cli"]
        else:
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                      f"--nproc_per_node={nproc}", "-m", "unravel.cli"]
        per_epoch = seconds_per_epoch(launch + train + ["--max-epochs", str(1 + args.epochs)], env,
                                      args.epochs)
        rate = args.latents / per_epoch
        base.setdefault(device, rate)
        print(f"{device:<8} {nproc:>9} {args.batch // nproc:>10} {per_epoch:>9.3f} {rate:>10.1f} "
              f"{rate / base[device]:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
