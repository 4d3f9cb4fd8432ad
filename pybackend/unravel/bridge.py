"""The Python side of the Pd external [unravel~]: the only module the C code calls (besides
`unravel.archive`, which tells a new object its inlets and outlets before torch is imported).

One `Session` per [unravel~] object holds its model, its bender and its job process. The C
side calls: `init()`, `routes()` (the first call), `control(session, sel, args, patch_dir, values,
want)` (every message that needs the model, on the object's control thread; it makes the
Session at the first `load`), `Runner.process()` (the model thread), `run_job(session, name,
args, patch_dir, arrays, sr)` (the job thread; `arrays`: the Pd arrays it reads). Every user
error is raised as `UnravelError` with a one-line message; C prints it with pd_error. The
UnRAVEl jobs (`JOBS`, `run_job`, `registry_message`) live in `unravel.jobs`.

Message arguments arrive as lists of str and float (Pd symbols and floats). Replies are lists
of lists `[selector, value, ...]`; a value may be a float32 numpy array (sent as floats).
"""

from __future__ import annotations

import gc
import os
import pathlib
import sys
import weakref

import numpy as np
import torch

from unravel import bend, blocks, jobproc, modelcache, pdargs, safewrite, voices
from unravel import model as _model
from unravel.errors import UnravelError, one_line, silence_warnings
from unravel.jobs import JOBS, REGISTRY, registry_message, run_job  # noqa: F401 - C calls these
from unravel.archive import resolve_model
from unravel.operations import BEND, CHANNELS, MORPH, OUTPUT

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
    takes milliseconds instead of about 70 ms. No collection before (the imports leave a few
    hundred objects of garbage: not worth the 70 ms it adds to the first sound, issue 24).
    Returns torch's version."""
    _model.set_threads(threads)
    silence_warnings()
    sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
    gc.freeze()
    return torch.__version__


# --------------------------------------------------------------------------- argument helpers


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
    q = pdargs.path(p, base)
    return q if q.suffix == ".ts" else q.with_name(q.name + ".ts")


# --------------------------------------------------------------------------- DSP runner


class Runner:
    """Runs one method on buffers owned by C: `inbuf` (in_chans x in_frames float32) to
    `outbuf` (out_chans x out_frames float32). `process()` is called by the worker thread;
    the C side checks that what it wrote is finite (see native/pyembed.c) and names the
    model with `name`. With a `group` (`poly 1`) its blocks run in the group's batched calls
    (unravel.voices) until the model changes; `voices` (int32: the group's members, 0 when
    it plays alone, and the items of its last call) is what C's `bang` replies."""

    def __init__(self, model: _model.Model, method: str, inbuf, in_chans: int, in_frames: int,
                 outbuf, out_chans: int, out_frames: int, group: voices.Group | None = None):
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
        self.voices = np.zeros(2, np.int32)
        self.voice = voices.Member(group, model, self.voices) if group else None
        if self.voice is not None:
            weakref.finalize(self, self.voice.leave)

    @one_line("dsp")
    def process(self) -> None:
        """Run the method on the input buffer and write the output buffer; a runner of a
        group runs its block alone in a round of its own (the C side gathers the group's
        blocks into one round: voices.Group.round)."""
        if self.voice is not None and self.voice.group.round([self]) == [0]:
            return
        self.leave_group()
        self.take(self.model.run(self.method, self.x))

    def leave_group(self) -> None:
        """Play alone from now on, with the state the group held for it."""
        if self.voice is not None:
            self.voice.leave()
            self.voice = None
            self.voices[:] = 0
        voices.take_back(self.model)

    def take(self, y) -> None:
        """The model's output (1, channels, frames) into the output buffer (torch's copy: its
        code is in the CPU caches right after the model ran, numpy's is not)."""
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
        m = _model.load_model(path, threads=torch.get_num_threads(), device=self.device, items=1)
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
            self._bender = bend.Bender(self.model)
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
        return [mp.in_channels, mp.in_ratio, mp.out_channels, mp.out_ratio,
                mp.block(self.model.ratio), int(self.model.sr)]

    @one_line("method")
    def runner(self, method: str, inbuf, in_chans: int, in_frames: int,
               outbuf, out_chans: int, out_frames: int) -> Runner:
        return Runner(self.model, method, inbuf, in_chans, in_frames, outbuf, out_chans, out_frames)

    @one_line("method")
    def prepare(self, method: str, bufsize: int, dspn: int, nin: int, nout: int,
                keep: bool, poly: bool = False) -> tuple:
        """The runner of `method` for the object's DSP, with its own buffers:
        `(runner, method, params, bufsize, block, notes)`. A method the model lacks becomes
        forward, as nn~ does (a note), or, with `keep` (after a load), the model's forward,
        encode or decode without a note. `bufsize` follows nn~'s rule (the next power of two,
        at least the method's block; a note when it changes); 0 runs inline, on blocks of
        Pd's vector `dspn` (at least the method's block). `nin`/`nout`: the object's fixed
        signal inlets and outlets (0 with -m), for the note when they differ from the
        method's. `block` is the frames per model call; `notes` are lines for Pd's window.
        With `poly` (live mode, not inline) the runner shares its calls with the other
        objects of the model's group (unravel.voices), when the model allows it."""
        notes: list[str] = []
        methods = self.model.methods
        if method not in methods:
            if keep:
                method = next((m for m in ("forward", "encode", "decode") if m in methods),
                              next(iter(methods)))
            else:
                notes.append(f"method '{method}' not found in the model, using forward instead")
                method = "forward"
        p = self.params(method)            # what C reads; refuses a method the model lacks
        mp = methods[method]
        ratio = mp.block(self.model.ratio)
        fitted = blocks.fit_bufsize(bufsize, ratio) if bufsize else 0
        if fitted != bufsize:
            notes.append(f"bufsize {bufsize} -> {fitted} (a power of two, at least the ratio "
                         f"{ratio} of method '{method}')")
            bufsize = fitted
        if nin and (mp.in_channels != nin or mp.out_channels != nout):
            notes.append(f"warning: method '{method}' takes {mp.in_channels} and gives "
                         f"{mp.out_channels} channels; this object has {nin} signal inlets and "
                         f"{nout} outlets (missing inputs are silent, extra outputs are dropped)")
        block = bufsize or blocks.pow2ceil(max(ratio, dspn))
        group = None
        if poly and bufsize:
            group, note = voices.group_for(self.model, method, block)
            notes += [note] if note else []
        r = Runner(self.model, method, None, mp.in_channels, block // mp.in_ratio,
                   None, mp.out_channels, block // mp.out_ratio, group)
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
        mp = self.model.methods.get(method)
        dim = [mp.in_channels, mp.out_channels] if mp else [0, 0]
        ratio = [mp.in_ratio, mp.out_ratio] if mp else [0, 0]
        return [["loaded", 1], ["enabled", enabled], ["method", method], ["bufsize", bufsize],
                ["dim", *dim], ["ratio", *ratio], ["latency", latency], ["mode", mode],
                ["underruns", underruns], *self.status_info()]

    def msg_gpu(self, args: list) -> list[list]:
        """`gpu 0|1`; without a GPU nn~'s note goes to Pd's window."""
        pdargs.count("gpu", args, 1, 1, "0|1")
        note = self.gpu(pdargs.number("gpu", args[0], "the switch"))
        return [["post", note]] if note else []

    def msg_reload(self, args: list) -> list[list]:
        pdargs.count("reload", args, 0, 0, "")
        self.model.reload()
        self._bender = None
        return [["post", f"reloaded {self.model.path.name}"]]

    def msg_get(self, args: list) -> list[list]:
        pdargs.count("get", args, 1, 1, "<attribute>")
        name = pdargs.symbol("get", args[0], "attribute")
        return [["attribute", name, *[pdargs.atom(v) for v in self.model.get_attribute(name)]]]

    def msg_set(self, args: list) -> list[list]:
        pdargs.count("set", args, 2, None, "<attribute> <value...>")
        name = pdargs.symbol("set", args[0], "attribute")
        self.model.set_attribute(name, args[1:])
        return []

    def msg_layers(self, args: list) -> list[list]:
        pdargs.count("layers", args, 0, 0, "")
        return [["layers", *self.bender.layers()]]

    def msg_get_weights(self, args: list) -> list[list]:
        pdargs.count("get_weights", args, 1, 1, "<layer> [array]")
        return [["layer", self.get_weights(pdargs.symbol("get_weights", args[0], "layer"))]]

    def msg_layer_stats(self, args: list) -> list[list]:
        """`layer_stats <layer>`: replies `layer_stats <layer> <size> <min> <max> <mean> <std>`
        of the layer's weights as they are now (mean and std in float64)."""
        pdargs.count("layer_stats", args, 1, 1, "<layer>")
        layer = pdargs.symbol("layer_stats", args[0], "layer")
        w = self.get_weights(layer).astype(np.float64)
        return [["layer_stats", layer, w.size, w.min(), w.max(), w.mean(), w.std()]]

    def msg_set_weights(self, args: list) -> list[list]:
        pdargs.count("set_weights", args, 2, None, "<layer> <floats...|array>")
        layer = pdargs.symbol("set_weights", args[0], "layer")
        if any(isinstance(v, str) for v in args[1:]):
            raise UnravelError("set_weights: the values must be floats (or one array name)")
        return self.set_weights(layer, np.asarray(args[1:], dtype=np.float32))

    def msg_bend(self, args: list) -> list[list]:
        pdargs.count("bend", args, 3, 5, f"<layer> <{'|'.join(bend.OPS)}> <amount> [percent] [seed]")
        layer = pdargs.symbol("bend", args[0], "layer")
        op = pdargs.symbol("bend", args[1], "op")
        amount = pdargs.value("bend", args[2], BEND.option("amount"))
        percent = pdargs.value("bend", args[3], BEND.option("percent")) if len(args) > 3 else None
        seed = pdargs.value("bend", args[4], BEND.option("seed")) if len(args) > 4 else None
        n = self.bender.bend(layer, op, amount, percent, seed)
        return [["post", f"bend {layer} {op} {amount:g}: {n} weights"]]

    def msg_channels(self, args: list) -> list[list]:
        """`channels <layer> ablate|invert|permute|scale <k> [all|<percent>|list <c>...] [seed]`:
        replies `channels <layer> <op> <count>`."""
        usage = "<layer> ablate|invert|permute|scale <k> [all|<percent>|list <c>...] [seed]"
        pdargs.count("channels", args, 2, None, usage)
        layer = pdargs.symbol("channels", args[0], "layer")
        op = pdargs.value("channels", args[1], CHANNELS.option("op"))
        rest, amount, channels, percent, seed = list(args[2:]), 1.0, None, None, 0
        if op == "scale":
            if not rest:
                raise UnravelError(f"channels: usage: channels {usage}")
            amount = pdargs.value("channels", rest.pop(0), CHANNELS.option("amount"))
        if rest[:1] == ["list"]:
            if len(rest) < 2:
                raise UnravelError("channels: list needs channel numbers")
            channels, rest = pdargs.value("channels", rest[1:], CHANNELS.option("channels")), []
        elif rest[:1] == ["all"]:
            rest.pop(0)
        elif rest:
            percent = pdargs.value("channels", rest.pop(0), CHANNELS.option("percent"))
        if rest:
            seed = pdargs.value("channels", rest.pop(0), CHANNELS.option("seed"))
        if rest:
            raise UnravelError(f"channels: usage: channels {usage}")
        n = self.bender.channels(layer, op, amount, channels, percent, seed)
        return [["channels", layer, op, n], ["post", f"channels {layer} {op}: {n} channels"]]

    def msg_morph(self, args: list) -> list[list]:
        """`morph <model file> <t> [layer prefix]`: replies `morph <matched> <unmatched>` and
        posts which layers did not match."""
        pdargs.count("morph", args, 2, 3, "<model file> <t> [layer prefix]")
        other = resolve_model(pdargs.symbol("morph", args[0], "the model"),
                              [self.patch_dir] if self.patch_dir else [])
        t = pdargs.value("morph", args[1], MORPH.option("t"))
        prefix = pdargs.symbol("morph", args[2], "the layer prefix") if len(args) > 2 else ""
        m = self.bender.morph(other, t, prefix)
        return [["morph", len(m.layers), len(m.unmatched)],
                ["post", f"morph {other.name} {t:g}: {m.summary()}"]]

    def msg_output(self, args: list) -> list[list]:
        """`output <layer> offset|threshold <v>` or `output <layer> clamp <low> <high>`:
        replies `output <layer> <op> <calls>` (how many calls of the layer the methods make)."""
        pdargs.count("output", args, 3, 4, "<layer> offset|threshold <value> | <layer> clamp <low> <high>")
        layer = pdargs.symbol("output", args[0], "layer")
        op = pdargs.value("output", args[1], OUTPUT.option("op"))
        values = [pdargs.value("output", a, OUTPUT.option("value")) for a in args[2:]]
        n = self.bender.output(layer, op, values)
        return [["output", layer, op, n],
                ["post", f"output {layer} {op} {' '.join(f'{v:g}' for v in values)}: {n} calls"]]

    def msg_restore(self, args: list) -> list[list]:
        pdargs.count("restore", args, 0, 1, "[layer]")
        names = self.bender.restore(pdargs.symbol("restore", args[0], "layer") if args else None)
        return [["post", f"restored {names[0]}" if args else f"restored {len(names)} layers"]]

    def msg_save(self, args: list) -> list[list]:
        """`save <path.ts> [force]`: an existing file is replaced only with `force`."""
        pdargs.count("save", args, 1, 2, "<path.ts> [force]")
        if len(args) == 2 and args[1] != "force":
            raise UnravelError("save: usage: save <path.ts> [force]")
        force = len(args) == 2
        p = _save_path(pdargs.symbol("save", args[0], "path"), self.patch_dir)
        if os.path.lexists(p) and not force:
            raise UnravelError(f"save: {p} already exists ('save <path> force' to overwrite)")
        safewrite.check_target(p, force)
        saver = self._bender or self.model      # a shared model stays shared
        return [["saved", str(saver.save(p, force=force))]]

    # ---------------------------------------------------------------- weights, no list traffic

    @one_line("get_weights")
    def get_weights(self, layer: str) -> np.ndarray:
        """The layer's weights, flat float32."""
        return np.ascontiguousarray(self.bender.get_weights(layer), dtype=np.float32)

    @one_line("set_weights")
    def set_weights(self, layer: str, values) -> list[list]:
        """Write a layer's weights from a float32 buffer (length checked by the bender);
        returns the line for Pd's window."""
        v = np.frombuffer(values, dtype=np.float32) if not isinstance(values, np.ndarray) else values
        self.bender.set_weights(layer, v)
        return [["post", f"set_weights {layer}: {v.size} weights"]]


@one_line()
def control(session: Session | None, sel: str, args: list, patch_dir: str, values,
            want: tuple | None) -> tuple:
    """One control message of an [unravel~] object, run on its control thread (never on Pd's):
    `load <model>` (makes the session of an empty object), `set_weights <layer>` with
    `values` (a float32 buffer copied from a Pd array), or any `Session.message`; then, with
    `want` = (method, bufsize, dspn, nin, nout, keep, poly), the runner for the object's DSP
    (`Session.prepare`). Returns (session, replies, prepared or None, status_info)."""
    replies: list = []
    if sel == "load":
        pdargs.count("load", args, 1, 1, "<model>")
        spec = pdargs.symbol("load", args[0], "the model")
        if session is None:
            session = Session(spec, patch_dir)
        else:
            session.load(spec, patch_dir)
    elif session is None:
        raise UnravelError(f"{sel}: no model loaded (use 'load <model>')")
    elif sel == "set_weights" and values is not None:
        replies = session.set_weights(pdargs.symbol("set_weights", args[0], "layer"), values)
    elif sel:
        replies = session.message(sel, list(args))
    prepared = session.prepare(*want) if want else None
    if sel in ("load", "reload"):
        modelcache.give_back_memory()       # what making the runner (a group) freed too
    return session, replies, prepared, session.status_info()


def routes() -> dict[str, list[str]]:
    """Where the C side sends a Pd message it does not handle itself (read once per process,
    when the bridge is imported): "jobs" run with `run_job` behind the object's control
    calls, "registry" messages with `run_job` too but need no model; any other selector goes
    to `control` (`Session.message`)."""
    return {"jobs": list(JOBS), "registry": list(REGISTRY)}


