"""Latents and audio in Pd arrays: what an [unravel~] job reads and writes instead of files.

A latent set `<name>` is the D arrays `<name>-0` … `<name>-<D-1>`, one value per latent
frame. An audio set is one array `<name>` (mono), or `<name>-0`, `<name>-1`, … (one per
channel). [unravel~] reads the sets a job names after `input-array` on Pd's thread when the
job starts and hands them over as {set: [(array, float32 values), …]} (the array `<name>`
alone when it exists, else `<name>-0`, `<name>-1`, … as far as they go); what a job puts
comes back as [(array, float32 values)], written on Pd's thread in one go when it ends
(arrays made or resized as needed)."""

from __future__ import annotations

import base64

import numpy as np

from unravel.errors import UnravelError

Arrays = list[tuple[str, np.ndarray]]


class PdArrays:
    """The Pd arrays of one job: the sets it was given (`inputs`), Pd's sample rate (`sr`,
    0 outside Pd) and the arrays it writes (`outputs`)."""

    def __init__(self, inputs: dict[str, Arrays] | None = None, sr: float = 0.0):
        self.inputs = {k: [(n, np.asarray(v, dtype=np.float32)) for n, v in arrs]
                       for k, arrs in (inputs or {}).items()}
        self.sr = float(sr)
        self.outputs: Arrays = []

    def channels(self, name: str, what: str) -> np.ndarray:
        """The set `name` as (channels, n) float32; UnravelError naming `what` when it is
        missing, empty or its arrays differ in length."""
        arrs = self.inputs.get(name)
        if not arrs:
            raise UnravelError(f"{what}: no array '{name}' or '{name}-0'")
        sizes = {len(v) for _, v in arrs}
        if len(sizes) > 1:
            listed = ", ".join(f"{n} {len(v)}" for n, v in arrs)
            raise UnravelError(f"{what}: the arrays of '{name}' differ in length ({listed})")
        if 0 in sizes:
            raise UnravelError(f"{what}: the arrays of '{name}' are empty")
        return np.stack([v for _, v in arrs])

    def latents(self, name: str, dims: int | None, what: str) -> np.ndarray:
        """The latent set `name` as (D, T) float32; with `dims`, exactly that many arrays."""
        z = self.channels(name, what)
        if dims is not None and z.shape[0] != dims:
            raise UnravelError(f"{what}: latent set '{name}' has {z.shape[0]} arrays "
                               f"({name}-0 ... {name}-{z.shape[0] - 1}), the model takes {dims}")
        return z

    def audio(self, name: str, what: str) -> tuple[np.ndarray, int]:
        """The audio set `name` as (channels, n) float32 and its rate (Pd's)."""
        if self.sr <= 0:
            raise UnravelError(f"{what}: audio arrays need Pd's sample rate (not known here)")
        return self.channels(name, what), int(round(self.sr))

    def put_latents(self, name: str, z: np.ndarray) -> str:
        """Write (D, T) latents to the set `name` (`name-0` …); returns `name`."""
        z = np.asarray(z, dtype=np.float32)
        self.outputs += [(f"{name}-{i}", np.ascontiguousarray(z[i])) for i in range(z.shape[0])]
        return name

    def put_audio(self, name: str, y: np.ndarray) -> str:
        """Write (channels, n) audio to the set `name` (mono: the array `name`)."""
        y = np.asarray(y, dtype=np.float32)
        if y.shape[0] == 1:
            self.outputs.append((name, np.ascontiguousarray(y[0])))
        else:
            self.outputs += [(f"{name}-{i}", np.ascontiguousarray(y[i])) for i in range(y.shape[0])]
        return name


def check_name(name: str, what: str) -> str:
    """A set name: a non-empty symbol without spaces."""
    if not name or any(c.isspace() for c in name):
        raise UnravelError(f"{what}: bad array name {name!r}")
    return name


# --------------------------------------------------------------------------- to a child process


def pack(arrays: Arrays) -> list[list[str]]:
    """Arrays as JSON-able [[name, base64 of float32], …] (for the job's child process)."""
    return [[n, base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode()]
            for n, v in arrays]


def unpack(packed: list) -> Arrays:
    """The inverse of `pack`."""
    return [(str(n), np.frombuffer(base64.b64decode(b), dtype="<f4").astype(np.float32))
            for n, b in packed]
