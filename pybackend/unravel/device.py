"""Where torch runs: the choice of device (`--device auto|cpu|cuda|cuda:N|mps`) and mixed
precision (`--precision 32|16-mixed|bf16-mixed`).

`auto` takes CUDA, then MPS, then the CPU (the order of the scripts unravel replaces). A
device that is asked for by name but absent is one clear UnravelError.
"""

from __future__ import annotations

import contextlib
import re

import torch

from unravel.errors import UnravelError

DEVICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("32", "16-mixed", "bf16-mixed")


def cuda_available() -> bool:
    """True when torch sees at least one CUDA device."""
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def mps_available() -> bool:
    """True on an Apple GPU that torch can use."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve(spec: str | torch.device | None = "cpu") -> torch.device:
    """The torch.device for `spec` (None means cpu); raises UnravelError when it is absent."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    s = (spec or "cpu").strip().lower()
    if s == "auto":
        if cuda_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if s == "cpu":
        return torch.device("cpu")
    if s == "mps":
        if not mps_available():
            raise UnravelError("device mps: no Apple GPU (MPS) available to torch")
        return torch.device("mps")
    m = re.fullmatch(r"cuda(?::(\d+))?", s)
    if m is None:
        raise UnravelError(f"device '{spec}': unknown (use {DEVICES})")
    if not cuda_available():
        raise UnravelError(f"device {s}: no CUDA GPU available to torch "
                           f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'})")
    index = int(m.group(1)) if m.group(1) is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise UnravelError(f"device {s}: no such GPU (this machine has {count}: cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def gpu() -> torch.device | None:
    """The GPU [unravel~]'s `gpu 1` moves a model to: cuda, else mps; None without one."""
    if cuda_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("mps") if mps_available() else None


def name(device: torch.device) -> str:
    """The device as a sidecar records it: 'cpu', 'cuda:0', 'mps'."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def check_precision(precision: str) -> str:
    """`precision` if it is one of PRECISIONS, else UnravelError."""
    p = str(precision)
    if p not in PRECISIONS:
        raise UnravelError(f"precision '{precision}': use one of {', '.join(PRECISIONS)}")
    return p


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision: None for 32 (no autocast)."""
    return {"32": None, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}[check_precision(precision)]


def autocast(device: torch.device, precision: str = "32"):
    """A context manager running the forward pass in `precision` on `device` (a no-op for 32)."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """The loss scaler for `precision`: active for 16-mixed (float16 gradients underflow),
    a pass-through for 32 and bf16-mixed."""
    return torch.amp.GradScaler(device.type, enabled=check_precision(precision) == "16-mixed")


def deterministic(device: torch.device) -> None:
    """Ask cuDNN for its deterministic kernels (same seed, same device: same bytes)."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for timing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
