"""Corpus work in worker processes (`encode --jobs N`, `prepare-diffusion --jobs N`).

Each worker process loads the model once from its file, on the same device with the same
number of torch threads, and takes whole input files; every file's work is the same code
as in one process, so the output files are the same, byte for byte.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence

import torch

from unravel.errors import UnravelError

_MODEL = None  # the model of this worker process


def _start(path: str, sr: int, device: str, threads: int) -> None:
    global _MODEL
    from unravel.errors import silence_warnings
    from unravel.model import Model, set_threads
    silence_warnings()
    set_threads(threads)
    _MODEL = Model(path, sr=sr, device=device)


def _run(task: tuple[Callable, tuple]):
    fn, args = task
    return fn(_MODEL, *args)


def check_jobs(jobs) -> int:
    """`jobs` as a count of worker processes (at least 1), else UnravelError."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UnravelError(f"jobs must be at least 1, got {jobs}")
    return jobs


def map_files(model, fn: Callable, items: Sequence[tuple], jobs: int = 1) -> list:
    """[fn(model, *item) for item in items], the results in order; with jobs > 1 in that many
    worker processes (spawned), each with its own copy of `model` loaded from its file (so
    the weights are the file's). `fn` must be a module-level function."""
    if check_jobs(jobs) == 1 or len(items) < 2:
        return [fn(model, *item) for item in items]
    start = (str(model.path), int(model.sr), str(model.device), torch.get_num_threads())
    with ProcessPoolExecutor(min(jobs, len(items)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start, initargs=start) as pool:
        return list(pool.map(_run, [(fn, tuple(item)) for item in items]))
