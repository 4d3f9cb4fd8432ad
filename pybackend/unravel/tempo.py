"""Quantized tempo: a loop of k latent frames lasts k * ratio / sr seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass

from unravel import limits
from unravel.errors import UnravelError


@dataclass(frozen=True)
class Tempo:
    """A loop of k frames: its length in seconds, its BPM (one beat per loop) and double time."""
    k: int
    seconds: float
    bpm: float

    @property
    def double(self) -> float:
        return 2 * self.bpm


def _check(sr: float, ratio: float) -> None:
    if sr <= 0 or ratio <= 0:
        raise UnravelError(f"tempo: sample rate and ratio must be > 0, got {sr} and {ratio}")


def frame_rate(sr: float, ratio: float) -> float:
    """Latent frames per second: sr / ratio (21.53 at 44100/2048)."""
    _check(sr, ratio)
    return sr / ratio


def loop(k: int, sr: float, ratio: float) -> Tempo:
    """The tempo of a loop of k frames: BPM = 60 * (sr / ratio) / k."""
    _check(sr, ratio)
    if k < 1:
        raise UnravelError(f"tempo: k must be >= 1, got {k}")
    return Tempo(k=k, seconds=k * ratio / sr, bpm=60.0 * sr / ratio / k)


def table(sr: float, ratio: float, min_bpm: float = 40.0, max_bpm: float = 240.0) -> list[Tempo]:
    """Every k whose BPM lies in [min_bpm, max_bpm], fastest first (at most
    limits.MAX_TEMPO_ROWS rows: a higher frame rate is an error naming the limit)."""
    if not 0 < min_bpm <= max_bpm:
        raise UnravelError(f"tempo: bad BPM range {min_bpm}..{max_bpm}")
    beats = 60.0 * frame_rate(sr, ratio)          # BPM of a loop of k frames is beats / k
    first, last = max(1, math.ceil(beats / max_bpm)), math.floor(beats / min_bpm)
    if last - first + 1 > limits.MAX_TEMPO_ROWS:
        raise UnravelError(f"tempo: {sr} Hz / {ratio} gives {last - first + 1} loop lengths between "
                           f"{min_bpm:g} and {max_bpm:g} BPM, more than the {limits.MAX_TEMPO_ROWS} a "
                           f"table shows (ask for one with --bpm)")
    rows = [loop(k, sr, ratio) for k in range(max(1, first - 1), last + 2)]
    return [t for t in rows if min_bpm <= t.bpm <= max_bpm]


def original_table(sr: float, ratio: float, last: int = 20) -> list[tuple[int, float, float | None]]:
    """UnRAVEl's tempo table: (k, BPM, double time) for k = 1..last, the BPM truncated to two
    decimals and the double time (twice that) on even k only (None on odd k)."""
    rows = []
    for k in range(1, last + 1):
        bpm = math.floor(loop(k, sr, ratio).bpm * 100) / 100
        rows.append((k, bpm, 2 * bpm if k % 2 == 0 else None))
    return rows


def nearest(bpm: float, sr: float, ratio: float) -> tuple[Tempo, float]:
    """The loop length k whose BPM is nearest `bpm`, and the error (its BPM minus `bpm`)."""
    if not bpm > 0:
        raise UnravelError(f"tempo: BPM must be > 0, got {bpm}")
    rate = frame_rate(sr, ratio)
    guess = max(1, round(60 * rate / bpm))
    candidates = [loop(k, sr, ratio) for k in (guess - 1, guess, guess + 1) if k >= 1]
    best = min(candidates, key=lambda t: (abs(t.bpm - bpm), t.k))
    return best, best.bpm - bpm
