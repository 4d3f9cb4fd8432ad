"""Bounds on the numbers users give (seeds, counts, sizes, ports) and on the memory one job may take.

Every option or file field that sets a size is checked against these before anything is
allocated, so bad input gets one error line naming the option and the limit instead of a
traceback, an OverflowError or a machine that runs out of memory.
"""

from __future__ import annotations

import os

from unravel.errors import UnravelError

MAX_SEED = 2**32 - 1          # numpy's limit; torch and the reference take the same seeds
MAX_THREADS = 256             # torch intra-op threads
MAX_COUNT = 10_000            # files one command makes (generate --files, diffuse --num)
MAX_JOBS = 256                # worker processes of encode/prepare-diffusion --jobs
MAX_STEPS = 10_000            # diffusion steps
MAX_LENGTH_MULT = 1024        # diffuse --length-mult
MAX_LATENT_FRAMES = 2**20     # latent frames in one sample, sequence or pattern (13 h at 21.5 Hz)
MIN_TRAIN_LENGTH = 256        # latent frames of one training example (prepare-diffusion, train-diffusion)
MAX_SR = 1_000_000            # sample rates (Hz)
MAX_RATIO = 2**20             # a method's ratio and the lcm of its two ratios (Pd's largest bufsize)
MAX_CHANNELS = 1024           # channels a model's method may declare (audio in/out, latent dims)
MAX_BLOCK_VALUES = 2**24      # channels x frames of the smallest block a method runs (64 MB)
MAX_PLOT_DIMS = 128           # histograms in one stats plot
MAX_PLOT_FILES = 8            # generated files in one generate --plot
MAX_TEMPO_ROWS = 10_000       # rows of one tempo table
MAX_BATCH = 1024              # seeds sampled together, training batch size
MAX_EPOCHS = 10_000_000       # training epochs and the like
MIN_PORT, MAX_PORT = 1, 65535
MAX_PAGE_SEED = 999_999_999   # seeds of the web page's seed fields and Randomize buttons
MAX_RESAMPLE_TAPS = 2**24     # filter taps of the sinc resampler (64 MB; 44.1 -> 48 kHz: 25 760)
DEFAULT_MAX_UPLOAD_MB = 300   # MB of decoded audio (32-bit samples) one page upload may hold (app --max-upload-mb)
MAX_ARCH_FILE_BYTES = 2**20  # a diffusion architecture given as JSON
MAX_ARCH_LEVELS = 32          # U-Net levels of a diffusion architecture
MAX_ARCH_VALUE = 8192         # any number of it (channels, items, factor, heads, features)
MAX_ARCH_BLOCKS = 256         # its items, all levels together
MAX_MANIFEST_BYTES = 64 * 2**20   # a prepare-diffusion folder's manifest
MEMORY_SHARE = 0.8            # share of the available memory one job may plan to use
MAX_DOWNLOAD_BYTES = 4 * 2**30    # one model downloaded from the registry
MAX_MODEL_LIST_BYTES = 16 * 2**20  # the registry's model list
DOWNLOAD_DISK_RESERVE = 256 * 2**20  # disk space a download leaves free
DOWNLOAD_MIN_RATE = 1024      # bytes a second a registry transfer must keep up, over ...
DOWNLOAD_STALL = 20.0         # ... any window of this many seconds (UNRAVEL_DOWNLOAD_STALL sets it)


def _env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable `name`, else `default`."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if 0 < value < 1e6 else default


DOWNLOAD_STALL = _env_seconds("UNRAVEL_DOWNLOAD_STALL", DOWNLOAD_STALL)


def check_range(value: int | float, low: int | float, high: int | float, name: str) -> int | float:
    """`value` if low <= value <= high, else UnravelError naming `name` and the bounds."""
    if not low <= value <= high:
        raise UnravelError(f"{name} must be between {low} and {high}, got {value}")
    return value


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable, else free physical pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 8 * 2**30


def memory_budget() -> int:
    """Bytes one job may plan to use: MEMORY_SHARE of the available memory."""
    return int(available_memory() * MEMORY_SHARE)


def audio_budget() -> int:
    """Bytes of decoded samples (float32) one audio file may hold: encoding it (decoding,
    resampling in float64, mixing, the model's pass) takes up to about 12 times that at its
    peak (7.0 GB for the 635 MB of an hour of AAC), within memory_budget()."""
    return memory_budget() // 12


def check_memory(nbytes: float, what: str, hint: str = "") -> None:
    """UnravelError when `what` needs more than memory_budget() bytes (`hint`: what to lower)."""
    budget = memory_budget()
    if nbytes > budget:
        more = f"; {hint}" if hint else ""
        raise UnravelError(f"{what} needs about {_size(nbytes)} of memory, more than the "
                           f"{_size(budget)} this machine has free{more}")


def _size(nbytes: float) -> str:
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GB"
    return f"{nbytes / 2**20:.0f} MB"
