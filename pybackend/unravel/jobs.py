"""The UnRAVEl jobs of [unravel~] (encode, stats, generate, decode, tempo, diffuse) and nn~'s
model registry messages, run on the object's job thread.

A job's options are those of its command (`unravel.operations`), as `key value` pairs. `tempo`,
and `stats` and `generate` on Pd arrays, run in this process; the other jobs in the session's
job process (`unravel.jobproc.Worker`), which calls `run_here` on its copy of the model.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Callable, Sequence

import numpy as np

from unravel import operations, pdarrays, pdargs, safewrite
from unravel.errors import UnravelError, one_line
from unravel.pdarrays import PdArrays
from unravel.settings import Settings, Spec

JobFn = Callable[["Model", Settings, str, PdArrays], list]   # noqa: F821 - unravel.model.Model
JOBS: dict[str, tuple[Spec, JobFn]] = {}
IN_PROCESS = ("tempo",)     # instant jobs, run on the job thread; the others in a child process
ARRAYS_IN_PROCESS = ("stats", "generate")   # on Pd arrays: a few ms of numpy, on the job thread
REGISTRY = ("print_available_models", "download", "remove")


def job(spec: Spec):
    """Decorator: make `fn(model, settings, patch_dir, arrays) -> [paths or values]` the Pd
    job of `spec` (`model`: the object's model, or in a child process its copy; `arrays`:
    the Pd arrays it was given and writes, `pdarrays.PdArrays`)."""
    def deco(fn: JobFn) -> JobFn:
        JOBS[spec.name] = (spec, fn)
        return fn
    return deco


def parse(name: str, args: Sequence, base: str) -> tuple[Settings, JobFn]:
    """A job's settings from Pd's `key value ...` (see `Spec.from_pd`), and its function."""
    entry = JOBS.get(name)
    if entry is None:
        raise UnravelError(f"unknown job '{name}' (jobs: {' '.join(JOBS)})")
    spec, fn = entry
    s = spec.from_pd(list(args), base)
    for o in spec.on("pd"):
        if o.kind == "array" and s.given(o.attr):
            pdarrays.check_name(getattr(s, o.attr), f"{name}: {o.key}")
    return s, fn


def _source(name: str, s: Settings) -> str:
    """Where a job's input comes from: 'input' (files) or 'input-array' (a set), not both.
    Arrays in need arrays out (`output-array`), except for `stats`, which replies."""
    if s.given("inputs") and s.given("input-array"):
        raise UnravelError(f"{name}: give input or input-array, not both")
    if s.given("input-array"):
        if name != "stats" and not s.given("output-array"):
            raise UnravelError(f"{name}: input-array writes to arrays: give output-array <name>")
        return "input-array"
    if not s.given("inputs"):
        raise UnravelError(f"{name}: option 'input' is required")
    return "input"


def _one_file(name: str, s: Settings) -> pathlib.Path:
    """The single input file of a job that writes arrays."""
    if len(s.inputs) != 1:
        raise UnravelError(f"{name}: output-array takes one input, got {len(s.inputs)}")
    return s.inputs[0]


def _in_latents(name: str, s: Settings, pd: PdArrays, dims: int | None) -> np.ndarray:
    """A latent job's input as (D, T) latents: a set or one latent file."""
    from unravel import latents
    if _source(name, s) == "input-array":
        return pd.latents(s.input_array, dims, name)
    return latents.read(_one_file(name, s), dims)


def _no_files(name: str, s: Settings, keys: Sequence[str]) -> None:
    """output-array writes no file: refuse the options that only files have."""
    for key in keys:
        if s.given(key):
            raise UnravelError(f"{name}: output-array writes no file: no {key}")


@job(operations.ENCODE)
def job_encode(m, s: Settings, base: str, pd: PdArrays) -> list:
    """Audio files to latent files, or audio (a set at Pd's rate, or one file) to a latent set."""
    from unravel import audio, pipeline
    if _source("encode", s) == "input" and not s.given("output-array"):
        return pipeline.encode_files(m, s.inputs, s.output or base or ".", latent_wav=s.latent_wav,
                                     progress=False, force=s.force, extensions=s.extensions,
                                     jobs=s.jobs, latent_subtype=s.latent_subtype,
                                     resampler=s.resampler)
    _no_files("encode", s, ("output", "latent-wav", "latent-subtype", "extensions", "jobs"))
    x, sr = (pd.audio(s.input_array, "encode") if s.given("input-array")
             else audio.read(_one_file("encode", s)))
    return [pd.put_latents(s.output_array, pipeline.encode_audio(m, x, sr, s.resampler))]


@job(operations.DECODE)
def job_decode(m, s: Settings, base: str, pd: PdArrays) -> list:
    """Latent files to audio files at the model's rate, or latents (a set or one file) to an
    audio set at Pd's rate."""
    from unravel import audio, pipeline
    if _source("decode", s) == "input" and not s.given("output-array"):
        return pipeline.decode_files(m, s.inputs, s.output or base or ".", progress=False,
                                     force=s.force, subtype=s.subtype)
    _no_files("decode", s, ("output", "subtype"))
    z = _in_latents("decode", s, pd, m.latent_dims)
    pipeline.check_decode(m, z, "decode")
    y = m.decode(z)
    if pd.sr > 0:
        y = audio.resample(y, m.sr, int(round(pd.sr)))
    return [pd.put_audio(s.output_array, y)]


@job(operations.STATS)
def job_stats(m, s: Settings, base: str, pd: PdArrays) -> list:
    """Latent files: writes the statistics as JSON (default: <first input>.stats.json beside
    it), and a plot with `plot`. A set: replies `<set> <D>` then each dimension's mean, std,
    min and max."""
    from unravel import plots, stats
    if _source("stats", s) == "input-array":
        if s.given("output") or s.given("plot"):
            raise UnravelError("stats: input-array replies the statistics: no output file")
        name = s.input_array
        st = stats.compute(pd.latents(name, None, "stats"), s.float32)
        rows = np.stack([st.mean, st.std, st.min, st.max], axis=1).ravel()
        return [name, st.dims, *rows.tolist()]
    r = stats.read(s.inputs, s.float32)
    out = pathlib.Path(s.output or r.paths[0].with_suffix(".stats.json"))
    if os.path.lexists(out) and not s.force and (out.is_file() or out.is_symlink()):
        raise UnravelError(f"stats: {out} already exists (force 1 to overwrite)")
    if s.plot:
        plots.histograms(r.z, s.plot, title=r.title, force=s.force)
    safewrite.write_bytes(out, json.dumps(r.to_dict(s.iqr), indent=2).encode(), force=s.force)
    return [out] + ([s.plot] if s.plot else [])


@job(operations.GENERATE)
def job_generate(m, s: Settings, base: str, pd: PdArrays) -> list:
    """Latent files from the statistics of latent files; or one latent set (the first file
    the file job makes with the same arguments) from a set or one latent file."""
    from unravel import generator
    kw = dict(pattern=s.pattern, dist=s.dist, iqr=s.iqr, loops=s.loops, seed=s.seed, float32=s.float32)
    ratio = m.ratio or 2048
    if _source("generate", s) == "input" and not s.given("output-array"):
        return generator.generate_files(s.replace(output=s.output or base or ".", sr=m.sr, ratio=ratio))
    _no_files("generate", s, ("output", "plot", "skip", "force", "latent-subtype"))
    if s.files != 1:
        raise UnravelError("generate: output-array takes files 1")
    z = _in_latents("generate", s, pd, None)
    points, _ = generator.resolve_points(s.points, s.bpm, m.sr, ratio)
    return [pd.put_latents(s.output_array, generator.generate(z, points=points, **kw))]


@job(operations.TEMPO)
def job_tempo(m, s: Settings, base: str, pd: PdArrays) -> list:
    """Replies `done tempo <k> <bpm> <double> <seconds>` for a loop of k frames or the k
    nearest `bpm` (the model's rate and ratio)."""
    from unravel import tempo
    ratio = m.ratio or 2048
    if s.k is not None:
        t = tempo.loop(s.k, m.sr, ratio)
    else:
        t, _ = tempo.nearest(s.bpm if s.bpm is not None else 120.0, m.sr, ratio)
    return [t.k, t.bpm, t.double, t.seconds]


@job(operations.DIFFUSE)
def job_diffuse(m, s: Settings, base: str, pd: PdArrays) -> list:
    """Latent diffusion decoded by the object's model; replies `<wav> <npy>` per result (the
    latents are always saved), then the latent wav when `latent-wav 1` asked for one. With
    `output-array`: the latents of one result (num 1) into that set, not decoded."""
    from unravel import diffusion
    ckpt = s.checkpoint
    if ckpt != "default" and base and (pathlib.Path(base) / ckpt).exists():
        s = s.replace(checkpoint=str(pathlib.Path(base) / ckpt))
    if s.given("output-array"):
        _no_files("diffuse", s, ("output", "save-latents", "latent-wav", "subtype", "name", "force"))
        if s.num != 1:
            raise UnravelError("diffuse: output-array takes num 1")
        (_, _, z), = diffusion.diffuse_latents(m, s, device=m.device)
        return [pd.put_latents(s.output_array, z)]
    reply: list = []
    for r in diffusion.diffuse_files(m, s.replace(save_latents=True), s.output or base or ".",
                                     device=m.device):
        reply += [r.wav, r.npy] + ([r.latent_wav] if r.latent_wav else [])
    return reply


# --------------------------------------------------------------------------- model registry


def registry_message(name: str, args: list, patch_dir: str) -> list[str]:
    """nn~'s registry messages (no model needed): `print_available_models`,
    `download <card> [name] [force]`, `remove <name>`; returns the lines the object posts."""
    from unravel import registry
    folder = patch_dir or "."
    if name == "print_available_models":
        pdargs.count(name, args, 0, 0, "")
        return registry.available_models()
    if name == "download":
        force = len(args) > 1 and args[-1] == "force"     # `force`: replace a file there
        args = args[:-1] if force else args
        pdargs.count(name, args, 1, 2, "<source/model/name> [name] [force]")
        card = pdargs.symbol(name, args[0], "the model card")
        return registry.download(card, folder, pdargs.symbol(name, args[1], "the name")
                                 if len(args) > 1 else "", force=force)
    if name == "remove":
        pdargs.count(name, args, 1, 1, "<name>")
        return registry.remove(pdargs.symbol(name, args[0], "the name"), folder)
    raise UnravelError(f"unknown registry message '{name}'")


# --------------------------------------------------------------------------- running


def _values(reply: list) -> list:
    """A job's reply values as Pd atoms: paths as str, numbers as float."""
    return [pdargs.atom(v) if not isinstance(v, os.PathLike) else str(v) for v in reply]


@one_line()
def run_job(session, name: str, args: Sequence, patch_dir: str,
            arrays: dict | None = None, sr: float = 0.0) -> tuple[list, list]:
    """Run the UnRAVEl job `name` of `session` (a bridge.Session, or None for the registry
    messages) with Pd's `key value ...` args and the Pd arrays it names (`arrays`: {set:
    [(array, float32 bytes)]}, Pd's rate `sr`); returns (the reply values: paths as str,
    numbers as float; the arrays to write: [(array, float32 bytes)]). The arguments are
    checked here; `tempo` runs here, the other jobs in a child process on its own copy of
    the session's model (`jobproc`), except `stats` and `generate` on Pd arrays (small,
    numpy only: here, so that a new pattern comes in within milliseconds)."""
    if name in REGISTRY:
        return registry_message(name, list(args), patch_dir), []
    try:
        return _run_job(session, name, args, patch_dir, arrays, sr)
    except UnravelError as e:       # in Pd's words: `force 1`, not `--force`
        raise UnravelError(JOBS[name][0].in_pd_words(str(e)) if name in JOBS else str(e)) from None


def _run_job(session, name: str, args: Sequence, patch_dir: str, arrays: dict | None,
             sr: float) -> tuple[list, list]:
    s, fn = parse(name, args, patch_dir)
    pd = PdArrays({k: [(n, np.frombuffer(b, dtype=np.float32)) for n, b in v]
                   for k, v in (arrays or {}).items()}, sr)
    if name in IN_PROCESS or (name in ARRAYS_IN_PROCESS and
                              (s.given("input-array") or s.given("output-array"))):
        values = _values(fn(session.model, s, patch_dir, pd))
    else:
        values = session.jobs.run(session.model, name, list(args), patch_dir, pd)
    return values, [(n, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for n, v in pd.outputs]


@one_line()
def run_here(model, name: str, args: Sequence, patch_dir: str, pd: PdArrays | None = None) -> list:
    """Run the job `name` in this process on `model` (what the job's child process calls);
    the arrays it writes go to `pd.outputs`."""
    s, fn = parse(name, args, patch_dir)
    return _values(fn(model, s, patch_dir, pd if pd is not None else PdArrays()))
