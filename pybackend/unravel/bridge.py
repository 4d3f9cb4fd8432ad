"""The Python side of the Pd external [unravel~]: the only module the C code calls (besides
`unravel.archive`, which tells a new object its inlets and outlets before torch is imported).

One `Session` per [unravel~] object holds its model, its bender and its job process. The C
side calls: `init()`, `routes()` (the first call), `control(session, sel, args, patch_dir, values,
want)` (every message that needs the model, on the object's control thread; it makes the
Session at the first `load`), `Runner.process()` (the model thread), `run_job(session, name,
args, patch_dir, arrays, sr)` (the job thread; `arrays`: the Pd arrays it reads). Every user
error is raised as `UnravelError` with a one-line message; C prints it with pd_error. The
UnRAVEl jobs are declared here (`JOBS`) and run in the session's job process
(`unravel.jobproc.Worker`), which calls `run_here`.

Message arguments arrive as lists of str and float (Pd symbols and floats). Replies are lists
of lists `[selector, value, ...]`; a value may be a float32 numpy array (sent as floats).
"""

from __future__ import annotations

import functools
import gc
import json
import math
import os
import pathlib
import sys
import weakref
from typing import Callable, Sequence

import numpy as np
import torch

from unravel.errors import UnravelError, without_class
from unravel import jobproc
from unravel import model as _model
from unravel import pdarrays
from unravel import safewrite
from unravel.pdarrays import PdArrays

Atom = "str | float"


class Cancelled(BaseException):
    """Raised inside a job's thread (by the C side) when its object is freed or Pd quits."""


def _quiet_unraisable(hook):
    """sys.unraisablehook that stays silent about Cancelled (it may land in a finalizer)."""
    def quiet(u):
        if u.exc_type is not None and issubclass(u.exc_type, (Cancelled, KeyboardInterrupt)):
            return
        hook(u)
    return quiet


def init(threads: int = 1) -> str:
    """Called once, by the first call into the bridge: one torch thread; everything imported
    so far (torch's hundred thousand objects) leaves the cyclic garbage collector's view, so
    that a full collection, which holds the GIL that every model thread needs once per block,
    takes milliseconds instead of about 70 ms. Returns torch's version."""
    _model.set_threads(threads)
    sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
    gc.collect()
    gc.freeze()
    return torch.__version__


def _cause(e: BaseException) -> str:
    """An unexpected exception as a short cause, without its class name or traceback."""
    if isinstance(e, MemoryError):
        return "out of memory"
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    line = without_class(lines[-1]) if lines else "unexpected error"
    return line if len(line) <= 200 else line[:197] + "..."


def one_line(what: str | None = None):
    """Decorator for what the C side calls: an unexpected exception becomes one UnravelError
    line `<what>: <cause>` (`what` defaults to the call's first argument, a message or job name)."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            try:
                return fn(*args, **kw)
            except UnravelError:
                raise
            except Exception as e:  # noqa: BLE001 - Pd must get one line, never a traceback
                name = what or (args[1] if len(args) > 1 and isinstance(args[1], str) else fn.__name__)
                raise UnravelError(f"{name}: {_cause(e)}") from None
        return wrapper
    return deco


# --------------------------------------------------------------------------- argument helpers


INT_LIMIT = 2 ** 31      # integers from Pd: |n| below this


def _int(cmd: str, v, what: str) -> int:
    if isinstance(v, str) or not math.isfinite(v) or float(v) != int(v) or abs(v) >= INT_LIMIT:
        raise UnravelError(f"{cmd}: {what} must be an integer below {INT_LIMIT} in size, got {v}")
    return int(v)


def _float(cmd: str, v, what: str) -> float:
    if isinstance(v, str):
        raise UnravelError(f"{cmd}: {what} must be a number, got '{v}'")
    if not math.isfinite(v):
        raise UnravelError(f"{cmd}: {what} must be a finite number, got {v}")
    return float(v)


def _sym(cmd: str, v, what: str) -> str:
    if not isinstance(v, str):
        raise UnravelError(f"{cmd}: {what} must be a symbol, got {v:g}")
    return v


def _nargs(cmd: str, args: list, lo: int, hi: int | None, usage: str) -> None:
    if len(args) < lo or (hi is not None and len(args) > hi):
        raise UnravelError(f"{cmd}: usage: {cmd} {usage}")


def _path(p: str, base: str) -> pathlib.Path:
    """A path as typed in a patch: ~ expanded, relative ones against the patch folder."""
    q = pathlib.Path(os.path.expanduser(p))
    return q if q.is_absolute() or not base else pathlib.Path(base) / q


def _save_path(p: str, base: str) -> pathlib.Path:
    """`save`'s path: not empty, a file name (not a folder), relative ones inside the patch
    folder (no '..'); '.ts' added when missing."""
    if not p.strip():
        raise UnravelError("save: empty name (usage: save <path.ts> [force])")
    q = pathlib.Path(os.path.expanduser(p))
    if p.endswith("/") or q.name in ("", ".", ".."):
        raise UnravelError(f"save: '{p}' is a folder, not a file name")
    if not q.is_absolute() and ".." in q.parts:
        raise UnravelError(f"save: '{p}' leaves the patch folder (give a name or an absolute path)")
    q = _path(p, base)
    return q if q.suffix == ".ts" else q.with_name(q.name + ".ts")


# --------------------------------------------------------------------------- DSP runner


class Runner:
    """Runs one method on buffers owned by C: `inbuf` (in_chans x in_frames float32) to
    `outbuf` (out_chans x out_frames float32). `process()` is called by the worker thread;
    the C side checks that what it wrote is finite (see native/pyembed.c) and names the
    model with `name`."""

    def __init__(self, model: _model.Model, method: str, inbuf, in_chans: int, in_frames: int,
                 outbuf, out_chans: int, out_frames: int):
        self.model = model
        self.method = method
        self.name = f"{model.path.name}: {method}"
        # buffers the caller gives (None: the runner's own, which C then reads and writes)
        self.inbuf = np.zeros(in_chans * in_frames, np.float32) if inbuf is None else inbuf
        self.outbuf = np.zeros(out_chans * out_frames, np.float32) if outbuf is None else outbuf
        self.x = torch.from_numpy(np.frombuffer(self.inbuf, dtype=np.float32).reshape(1, in_chans, in_frames))
        self.out = torch.from_numpy(np.frombuffer(self.outbuf, dtype=np.float32).reshape(out_chans, out_frames))
        # run the conversion path once here (Pd's thread): torch makes some static objects
        # at first use, and their exit-time destructors must be registered before the
        # external's exit handler (see native/unravel_tilde.c)
        self.out.copy_(torch.zeros(out_chans, out_frames))

    @one_line("dsp")
    def process(self) -> None:
        """Run the method on the input buffer and write the output buffer (torch's copy: its
        code is in the CPU caches right after the model ran, numpy's is not)."""
        y = self.model.run(self.method, self.x)
        if not isinstance(y, torch.Tensor) or y.dim() != 3 or y.shape[0] != 1:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise UnravelError(f"{self.name} returned {shape}, expected (1, channels, frames)")
        if y.is_complex():
            raise UnravelError(f"{self.name} output is not finite (NaN or infinite values)")
        y, out = y[0], self.out
        if y.shape == out.shape:
            out.copy_(y)
            return
        c = min(y.shape[0], out.shape[0])
        n = min(y.shape[1], out.shape[1])
        out.zero_()
        out[:c, :n] = y[:c, :n]


# --------------------------------------------------------------------------- the session


class Session:
    """What one [unravel~] object knows: its model, its bender and its patch folder."""

    @one_line("load")
    def __init__(self, spec: str, patch_dir: str = ""):
        self.patch_dir = patch_dir
        self.model: _model.Model | None = None
        self._bender = None
        self.device = torch.device("cpu")  # where models run: `gpu 1` moves them to the GPU
        self.jobs = jobproc.Worker()        # the job process, kept between jobs
        weakref.finalize(self, self.jobs.close)
        self.load(spec, patch_dir)

    @one_line("load")
    def load(self, spec: str, patch_dir: str = "") -> None:
        """Load the model `spec` ('default', a path, '.ts' optional; relative to the patch)
        on the session's device; the current model stays when this fails."""
        if patch_dir:
            self.patch_dir = patch_dir
        search = [self.patch_dir] if self.patch_dir else []
        path = _model.resolve_model(os.path.expanduser(spec), search)
        m = _model.load_model(path, threads=torch.get_num_threads(), device=self.device)
        self.model, self._bender = m, None

    def gpu(self, on: float) -> str:
        """`gpu 1`: run the model on the GPU (CUDA, else MPS), `gpu 0`: on the CPU; the
        weights move as they are (bent or not). The model thread copies each block to the
        device and back; the audio thread never sees it. Returns the line for Pd to post:
        '' when done, nn~'s note when there is no GPU (the model stays on the CPU)."""
        from unravel import device as _device
        target = _device.gpu() if on else torch.device("cpu")
        if target is None:
            return "GPU mode not available (no CUDA or MPS device: the model runs on the CPU)"
        self.device = target
        if self.model is not None:
            self.model.to(target)
        return ""

    @property
    def bender(self):
        """The model's Bender, made at first use (after a reload: a new one)."""
        if self._bender is None:
            from unravel.bend import Bender
            self._bender = Bender(self.model)
        return self._bender

    @one_line("method")
    def params(self, method: str) -> list[int]:
        """[in_channels, in_ratio, out_channels, out_ratio, block, sr] of `method`; block is the
        smallest buffer (samples) the method runs without padding: whole frames of both
        sides, and whole latent frames for audio-to-audio methods such as forward; sr is the
        model's sample rate."""
        mp = self.model.methods.get(method)
        if mp is None:
            raise UnravelError(f"{self.model.path.name}: no method '{method}' (has {' '.join(self.model.methods)})")
        block = math.lcm(mp.in_ratio, mp.out_ratio)
        if mp.in_ratio == mp.out_ratio == 1 and self.model.ratio:
            block = int(self.model.ratio)
        return [mp.in_channels, mp.in_ratio, mp.out_channels, mp.out_ratio, block, int(self.model.sr)]

    @one_line("method")
    def runner(self, method: str, inbuf, in_chans: int, in_frames: int,
               outbuf, out_chans: int, out_frames: int) -> Runner:
        return Runner(self.model, method, inbuf, in_chans, in_frames, outbuf, out_chans, out_frames)

    @one_line("method")
    def prepare(self, method: str, bufsize: int, dspn: int, nin: int, nout: int,
                keep: bool) -> tuple:
        """The runner of `method` for the object's DSP, with its own buffers:
        `(runner, method, params, bufsize, block, notes)`. A method the model lacks becomes
        forward, as nn~ does (a note), or, with `keep` (after a load), the model's forward,
        encode or decode without a note. `bufsize` follows nn~'s rule (the next power of two,
        at least the method's block; a note when it changes); 0 runs inline, on blocks of
        Pd's vector `dspn` (at least the method's block). `nin`/`nout`: the object's fixed
        signal inlets and outlets (0 with -m), for the note when they differ from the
        method's. `block` is the frames per model call; `notes` are lines for Pd's window."""
        notes: list[str] = []
        methods = self.model.methods
        if method not in methods:
            if keep:
                method = next((m for m in ("forward", "encode", "decode") if m in methods),
                              next(iter(methods)))
            else:
                notes.append(f"method '{method}' not found in the model, using forward instead")
                method = "forward"
        p = self.params(method)
        ratio = p[4]
        fitted = fit_bufsize(bufsize, ratio) if bufsize else 0
        if fitted != bufsize:
            notes.append(f"bufsize {bufsize} -> {fitted} (a power of two, at least the ratio "
                         f"{ratio} of method '{method}')")
            bufsize = fitted
        if nin and (p[0] != nin or p[2] != nout):
            notes.append(f"warning: method '{method}' takes {p[0]} and gives {p[2]} channels; "
                         f"this object has {nin} signal inlets and {nout} outlets (missing inputs "
                         f"are silent, extra outputs are dropped)")
        block = bufsize or pow2ceil(max(ratio, dspn))
        r = Runner(self.model, method, None, p[0], block // p[1], None, p[2], block // p[3])
        return r, method, p, bufsize, block, notes

    def status_info(self) -> list[list]:
        """The replies to `bang` that only the model knows (the C side adds its own)."""
        m = self.model
        return [["gpu", int(m.device.type != "cpu")], ["model", str(m.path)],
                ["methods", *m.methods], ["attributes", *m.attributes()], ["sr", m.sr],
                ["shared", int(m.shared)]]

    # ---------------------------------------------------------------- control messages

    @one_line()
    def message(self, sel: str, args: list) -> list[list]:
        """Handle a control message; returns the replies for the info outlet."""
        fn = getattr(self, "msg_" + sel, None)
        if fn is None:
            raise UnravelError(f"{sel}: unknown message")
        return fn(list(args)) or []

    def msg_status(self, args: list) -> list[list]:
        """args: method enabled bufsize latency mode underruns (what C knows); the C side
        answers `bang` itself from status_info() and its own values, in this order."""
        method, enabled, bufsize, latency, mode, underruns = args
        p = self.params(method) if method in self.model.methods else [0] * 6
        return [["loaded", 1], ["enabled", enabled], ["method", method], ["bufsize", bufsize],
                ["dim", p[0], p[2]], ["ratio", p[1], p[3]], ["latency", latency], ["mode", mode],
                ["underruns", underruns], *self.status_info()]

    def msg_gpu(self, args: list) -> list[list]:
        """`gpu 0|1`; without a GPU nn~'s note goes to Pd's window."""
        _nargs("gpu", args, 1, 1, "0|1")
        note = self.gpu(_float("gpu", args[0], "the switch"))
        return [["post", note]] if note else []

    def msg_reload(self, args: list) -> list[list]:
        _nargs("reload", args, 0, 0, "")
        self.model.reload()
        self._bender = None
        return []

    def msg_get(self, args: list) -> list[list]:
        _nargs("get", args, 1, 1, "<attribute>")
        name = _sym("get", args[0], "attribute")
        return [["attribute", name, *[_atom(v) for v in self.model.get_attribute(name)]]]

    def msg_set(self, args: list) -> list[list]:
        _nargs("set", args, 2, None, "<attribute> <value...>")
        name = _sym("set", args[0], "attribute")
        self.model.set_attribute(name, args[1:])
        return []

    def msg_layers(self, args: list) -> list[list]:
        _nargs("layers", args, 0, 0, "")
        return [["layers", *self.bender.layers()]]

    def msg_get_weights(self, args: list) -> list[list]:
        _nargs("get_weights", args, 1, 1, "<layer> [array]")
        return [["layer", self.get_weights(_sym("get_weights", args[0], "layer"))]]

    def msg_set_weights(self, args: list) -> list[list]:
        _nargs("set_weights", args, 2, None, "<layer> <floats...|array>")
        layer = _sym("set_weights", args[0], "layer")
        if any(isinstance(v, str) for v in args[1:]):
            raise UnravelError("set_weights: the values must be floats (or one array name)")
        self.set_weights(layer, np.asarray(args[1:], dtype=np.float32))
        return []

    def msg_bend(self, args: list) -> list[list]:
        _nargs("bend", args, 3, 5, "<layer> <offset|spread|randomize|invert|zero> <amount> [percent] [seed]")
        layer = _sym("bend", args[0], "layer")
        op = _sym("bend", args[1], "op")
        amount = _float("bend", args[2], "amount")
        percent = _float("bend", args[3], "percent") if len(args) > 3 else None
        seed = _int("bend", args[4], "seed") if len(args) > 4 else None
        self.bender.bend(layer, op, amount, percent, seed)
        return []

    def msg_restore(self, args: list) -> list[list]:
        _nargs("restore", args, 0, 1, "[layer]")
        self.bender.restore(_sym("restore", args[0], "layer") if args else None)
        return []

    def msg_save(self, args: list) -> list[list]:
        """`save <path.ts> [force]`: an existing file is replaced only with `force`."""
        _nargs("save", args, 1, 2, "<path.ts> [force]")
        if len(args) == 2 and args[1] != "force":
            raise UnravelError("save: usage: save <path.ts> [force]")
        force = len(args) == 2
        p = _save_path(_sym("save", args[0], "path"), self.patch_dir)
        if os.path.lexists(p) and not force:
            raise UnravelError(f"save: {p} already exists ('save <path> force' to overwrite)")
        safewrite.check_target(p, force)
        return [["saved", str(self.model.save(p, force=force))]]    # a shared model stays shared

    # ---------------------------------------------------------------- weights, no list traffic

    @one_line("get_weights")
    def get_weights(self, layer: str) -> np.ndarray:
        """The layer's weights, flat float32."""
        return np.ascontiguousarray(self.bender.get_weights(layer), dtype=np.float32)

    @one_line("set_weights")
    def set_weights(self, layer: str, values) -> None:
        """Write a layer's weights from a float32 buffer (length checked by the bender)."""
        self.bender.set_weights(layer, np.frombuffer(values, dtype=np.float32)
                                if not isinstance(values, np.ndarray) else values)


def pow2ceil(n: int) -> int:
    """The smallest power of two >= n."""
    b = 1
    while b < n:
        b *= 2
    return b


def fit_bufsize(n: int, ratio: int) -> int:
    """nn~'s rule for a buffer size: the next power of two, at least `ratio` (and a multiple
    of it: a ratio that is not a power of two gives itself)."""
    b = max(pow2ceil(n), pow2ceil(ratio))
    return b if b % ratio == 0 else ratio


@one_line()
def control(session: Session | None, sel: str, args: list, patch_dir: str, values,
            want: tuple | None) -> tuple:
    """One control message of an [unravel~] object, run on its control thread (never on Pd's):
    `load <model>` (makes the session of an empty object), `set_weights <layer>` with
    `values` (a float32 buffer copied from a Pd array), or any `Session.message`; then, with
    `want` = (method, bufsize, dspn, nin, nout, keep), the runner for the object's DSP
    (`Session.prepare`). Returns (session, replies, prepared or None, status_info)."""
    replies: list = []
    if sel == "load":
        _nargs("load", args, 1, 1, "<model>")
        spec = _sym("load", args[0], "the model")
        if session is None:
            session = Session(spec, patch_dir)
        else:
            session.load(spec, patch_dir)
    elif session is None:
        raise UnravelError(f"{sel}: no model loaded (use 'load <model>')")
    elif sel == "set_weights" and values is not None:
        session.set_weights(_sym("set_weights", args[0], "layer"), values)
    elif sel:
        replies = session.message(sel, list(args))
    prepared = session.prepare(*want) if want else None
    return session, replies, prepared, session.status_info()


def _atom(v):
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, (int, float, np.number)):
        return float(v)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v.item())
    return str(v)


def routes() -> dict[str, list[str]]:
    """Where the C side sends a Pd message it does not handle itself (read once per process,
    when the bridge is imported): "jobs" run with `run_job` behind the object's control
    calls, "registry" messages with `run_job` too but need no model; any other selector goes
    to `control` (`Session.message`)."""
    return {"jobs": list(JOBS), "registry": list(REGISTRY)}


# --------------------------------------------------------------------------- UnRAVEl jobs

# option name -> kind: 'paths' (repeatable), 'path', 'array' (a Pd array set's name), 'str',
# 'int', 'float', 'bool'
JobFn = Callable[[_model.Model, dict, str, PdArrays], list]
JOBS: dict[str, tuple[JobFn, dict[str, str]]] = {}
IN_PROCESS = ("tempo",)     # instant jobs, run on the job thread; the others in a child process
ARRAYS_IN_PROCESS = ("stats", "generate")   # on Pd arrays: a few ms of numpy, on the job thread


def register_job(name: str, options: dict[str, str]):
    """Decorator: make `fn(model, opts, patch_dir, arrays) -> [paths or values]` the Pd
    message `name` (`model`: the object's model, or in a child process its copy; `arrays`:
    the Pd arrays it was given and writes, `pdarrays.PdArrays`)."""
    def deco(fn: JobFn) -> JobFn:
        JOBS[name] = (fn, options)
        return fn
    return deco


def parse_job_args(name: str, args: list, options: dict[str, str], base: str) -> dict:
    """`key value key value ...` (as the CLI's long options, `-`/`_` alike, leading dashes
    optional; repeat a 'paths' key for several files) -> {option: value}."""
    opts: dict = {}
    i = 0
    while i < len(args):
        k = args[i]
        if not isinstance(k, str):
            raise UnravelError(f"{name}: expected an option name, got {k:g} "
                               f"(options: {' '.join(options)})")
        key = k.lstrip("-").replace("_", "-")
        kind = options.get(key)
        if kind is None:
            raise UnravelError(f"{name}: unknown option '{k}' (options: {' '.join(options)})")
        if i + 1 >= len(args):
            raise UnravelError(f"{name}: option '{key}' needs a value")
        v = args[i + 1]
        i += 2
        if kind in ("paths", "path"):
            p = _path(v if isinstance(v, str) else f"{v:g}", base)
            if kind == "paths":
                opts.setdefault(key, []).append(p)
            else:
                opts[key] = p
        elif kind == "array":
            opts[key] = pdarrays.check_name(_sym(name, v, key), f"{name}: {key}")
        elif kind == "str":
            opts[key] = v if isinstance(v, str) else f"{v:g}"
        elif kind == "int":
            opts[key] = _int(name, v, key)
        elif kind == "float":
            opts[key] = _float(name, v, key)
        elif kind == "bool":
            opts[key] = bool(_float(name, v, key))
    return opts


def _need(name: str, opts: dict, key: str):
    if key not in opts:
        raise UnravelError(f"{name}: option '{key}' is required")
    return opts[key]


def _source(name: str, o: dict) -> str:
    """Where a job's input comes from: 'input' (files) or 'input-array' (a set), not both.
    Arrays in need arrays out (`output-array`), except for `stats`, which replies."""
    if "input" in o and "input-array" in o:
        raise UnravelError(f"{name}: give input or input-array, not both")
    if "input-array" in o:
        if name != "stats" and "output-array" not in o:
            raise UnravelError(f"{name}: input-array writes to arrays: give output-array <name>")
        return "input-array"
    _need(name, o, "input")
    return "input"


def _one_file(name: str, o: dict) -> pathlib.Path:
    """The single input file of a job that writes arrays."""
    files = o["input"]
    if len(files) != 1:
        raise UnravelError(f"{name}: output-array takes one input, got {len(files)}")
    return files[0]


def _in_latents(name: str, o: dict, pd: PdArrays, dims: int | None) -> "np.ndarray":
    """A latent job's input as (D, T) latents: a set or one latent file."""
    from unravel import latents
    if _source(name, o) == "input-array":
        return pd.latents(o["input-array"], dims, name)
    return latents.read(_one_file(name, o), dims)


@register_job("encode", {"input": "paths", "input-array": "array", "output": "path",
                         "output-array": "array", "latent-wav": "bool", "force": "bool"})
def job_encode(m: _model.Model, o: dict, base: str, pd: PdArrays) -> list:
    """Audio files to latent files, or audio (a set at Pd's rate, or one file) to a latent set."""
    from unravel import audio, pipeline
    if _source("encode", o) == "input" and "output-array" not in o:
        return pipeline.encode_files(m, o["input"], o.get("output", base or "."),
                                     latent_wav=o.get("latent-wav", False), progress=False,
                                     force=o.get("force", False))
    x, sr = (pd.audio(o["input-array"], "encode") if "input-array" in o
             else audio.read(_one_file("encode", o)))
    return [pd.put_latents(o["output-array"], pipeline.encode_audio(m, x, sr))]


@register_job("decode", {"input": "paths", "input-array": "array", "output": "path",
                         "output-array": "array", "force": "bool"})
def job_decode(m: _model.Model, o: dict, base: str, pd: PdArrays) -> list:
    """Latent files to audio files at the model's rate, or latents (a set or one file) to an
    audio set at Pd's rate."""
    from unravel import audio, pipeline
    if _source("decode", o) == "input" and "output-array" not in o:
        return pipeline.decode_files(m, o["input"], o.get("output", base or "."),
                                     progress=False, force=o.get("force", False))
    z = _in_latents("decode", o, pd, m.latent_dims)
    pipeline.check_decode(m, z, "decode")
    y = m.decode(z)
    if pd.sr > 0:
        y = audio.resample(y, m.sr, int(round(pd.sr)))
    return [pd.put_audio(o["output-array"], y)]


@register_job("stats", {"input": "paths", "input-array": "array", "iqr": "bool",
                        "output": "path", "force": "bool"})
def job_stats(m: _model.Model, o: dict, base: str, pd: PdArrays) -> list:
    """Latent files: writes the statistics as JSON (default: <first input>.stats.json beside
    it). A set: replies `<set> <D>` then each dimension's mean, std, min and max."""
    from unravel import pipeline, stats
    if _source("stats", o) == "input-array":
        if "output" in o:
            raise UnravelError("stats: input-array replies the statistics: no output file")
        name = o["input-array"]
        s = stats.compute(pd.latents(name, None, "stats"))
        rows = np.stack([s.mean, s.std, s.min, s.max], axis=1).ravel()
        return [name, s.dims, *rows.tolist()]
    inputs = o["input"]
    st = pipeline.stats_files(inputs, iqr=o.get("iqr", False))
    out = pathlib.Path(o.get("output") or pathlib.Path(st["files"][0]).with_suffix(".stats.json"))
    force = o.get("force", False)
    if os.path.lexists(out) and not force and (out.is_file() or out.is_symlink()):
        raise UnravelError(f"stats: {out} already exists (force 1 to overwrite)")
    safewrite.write_bytes(out, json.dumps(st, indent=2).encode(), force=force)
    return [out]


@register_job("generate", {"input": "paths", "input-array": "array", "output": "path",
                           "output-array": "array", "pattern": "str", "dist": "str",
                           "iqr": "bool", "points": "int", "bpm": "float", "loops": "int",
                           "files": "int", "seed": "int"})
def job_generate(m: _model.Model, o: dict, base: str, pd: PdArrays) -> list:
    """Latent files from the statistics of latent files; or one latent set (the first file
    the file job makes with the same arguments) from a set or one latent file."""
    from unravel import pipeline
    kw = dict(pattern=o.get("pattern", "default"), dist=o.get("dist", "normal"),
              iqr=o.get("iqr", False), loops=o.get("loops", 1), seed=o.get("seed", 0))
    ratio = m.ratio or 2048
    if _source("generate", o) == "input" and "output-array" not in o:
        return pipeline.generate_files(o["input"], o.get("output", base or "."),
                                       points=o.get("points"), bpm=o.get("bpm"),
                                       files=o.get("files", 1), sr=m.sr, ratio=ratio, **kw)
    if o.get("files", 1) != 1:
        raise UnravelError("generate: output-array takes files 1")
    z = _in_latents("generate", o, pd, None)
    points, _ = pipeline.resolve_points(o.get("points"), o.get("bpm"), m.sr, ratio)
    return [pd.put_latents(o["output-array"], pipeline.generate(z, points=points, **kw))]


@register_job("tempo", {"bpm": "float", "k": "int"})
def job_tempo(m: _model.Model, o: dict, base: str, pd: PdArrays) -> list:
    """Replies `done tempo <k> <bpm> <double> <seconds>` for a loop of k frames or the k
    nearest `bpm` (the model's rate and ratio)."""
    from unravel import tempo
    ratio = m.ratio or 2048
    if "k" in o and "bpm" in o:
        raise UnravelError("tempo: give k or bpm, not both")
    if "k" in o:
        t = tempo.loop(o["k"], m.sr, ratio)
    else:
        t, _ = tempo.nearest(o.get("bpm", 120.0), m.sr, ratio)
    return [t.k, t.bpm, t.double, t.seconds]


@register_job("diffuse", {"checkpoint": "str", "output": "path", "output-array": "array",
                          "seed": "int", "num": "int",
                          "steps": "int", "sampler": "str", "temperature": "float", "latent-scale": "float",
                          "skip-normalize": "bool", "length-mult": "int", "latent-length": "int",
                          "lerp": "bool",
                          "seed-a": "int", "seed-b": "int", "lerp-factor": "float",
                          "save-latents": "bool", "latent-wav": "bool", "arch": "str",
                          "name": "str", "batch": "int", "force": "bool"})
def job_diffuse(m: _model.Model, o: dict, base: str, pd: PdArrays) -> list:
    """Latent diffusion decoded by the object's model; replies `<wav> <npy>` per result (the
    latents are always saved), then the latent wav when `latent-wav 1` asked for one. With
    `output-array`: the latents of one result (num 1) into that set, not decoded."""
    from unravel import diffusion
    ckpt = o.pop("checkpoint", "default")
    if ckpt != "default" and base and (pathlib.Path(base) / ckpt).exists():
        ckpt = str(pathlib.Path(base) / ckpt)
    kw = {k.replace("-", "_"): v for k, v in o.items() if k not in ("output", "output-array")}
    kw["device"] = m.device  # the diffusion network runs where the object's model runs
    if "output-array" in o:
        for key in ("output", "save-latents", "latent-wav", "name", "force"):
            if key in o:
                raise UnravelError(f"diffuse: output-array writes no file: no {key}")
        if o.get("num", 1) != 1:
            raise UnravelError("diffuse: output-array takes num 1")
        (_, _, z), = diffusion.diffuse_latents(m, ckpt, **kw)
        return [pd.put_latents(o["output-array"], z)]
    kw["save_latents"] = True
    reply: list = []
    for r in diffusion.diffuse_files(m, ckpt, o.get("output", base or "."), progress=False, **kw):
        reply += [r.wav, r.npy] + ([r.latent_wav] if r.latent_wav else [])
    return reply


# --------------------------------------------------------------------------- model registry


def registry_message(name: str, args: list, patch_dir: str) -> list[str]:
    """nn~'s registry messages (no model needed): `print_available_models`,
    `download <card> [name]`, `remove <name>`; returns the lines the object posts."""
    from unravel import registry
    folder = patch_dir or "."
    if name == "print_available_models":
        _nargs(name, args, 0, 0, "")
        return registry.available_models()
    if name == "download":
        _nargs(name, args, 1, 2, "<source/model/name> [name]")
        card = _sym(name, args[0], "the model card")
        return registry.download(card, folder, _sym(name, args[1], "the name") if len(args) > 1 else "")
    if name == "remove":
        _nargs(name, args, 1, 1, "<name>")
        return registry.remove(_sym(name, args[0], "the name"), folder)
    raise UnravelError(f"unknown registry message '{name}'")


REGISTRY = ("print_available_models", "download", "remove")


def _job(name: str) -> tuple[JobFn, dict[str, str]]:
    entry = JOBS.get(name)
    if entry is None:
        raise UnravelError(f"unknown job '{name}' (jobs: {' '.join(JOBS)})")
    return entry


def _values(reply: list) -> list:
    """A job's reply values as Pd atoms: paths as str, numbers as float."""
    return [_atom(v) if not isinstance(v, os.PathLike) else str(v) for v in reply]


@one_line()
def run_job(session: Session | None, name: str, args: Sequence, patch_dir: str,
            arrays: dict | None = None, sr: float = 0.0) -> tuple[list, list]:
    """Run the UnRAVEl job `name` with Pd's `key value ...` args and the Pd arrays it names
    (`arrays`: {set: [(array, float32 bytes)]}, Pd's rate `sr`); returns (the reply values:
    paths as str, numbers as float; the arrays to write: [(array, float32 bytes)]). The
    arguments are checked here; `tempo` runs here, the other jobs in a child process on its
    own copy of the session's model (`jobproc`), except `stats` and `generate` on Pd arrays
    (small, numpy only: here, so that a new pattern comes in within milliseconds). The
    registry messages run here too, without a session."""
    if name in REGISTRY:
        return registry_message(name, list(args), patch_dir), []
    fn, options = _job(name)
    opts = parse_job_args(name, list(args), options, patch_dir)
    pd = PdArrays({k: [(n, np.frombuffer(b, dtype=np.float32)) for n, b in v]
                   for k, v in (arrays or {}).items()}, sr)
    if name in IN_PROCESS or (name in ARRAYS_IN_PROCESS and
                              ("input-array" in opts or "output-array" in opts)):
        values = _values(fn(session.model, opts, patch_dir, pd))
    else:
        values = session.jobs.run(session.model, name, list(args), patch_dir, pd)
    return values, [(n, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for n, v in pd.outputs]


@one_line()
def run_here(model: _model.Model, name: str, args: Sequence, patch_dir: str,
             pd: PdArrays | None = None) -> list:
    """Run the job `name` in this process on `model` (what the job's child process calls);
    the arrays it writes go to `pd.outputs`."""
    fn, options = _job(name)
    opts = parse_job_args(name, list(args), options, patch_dir)
    return _values(fn(model, opts, patch_dir, pd if pd is not None else PdArrays()))
