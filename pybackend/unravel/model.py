"""Load a TorchScript model that follows nn~'s contract and run its methods.

No acids packages needed: everything comes from the TorchScript file (`get_methods()` or
`<m>_params` buffers, `get_attributes()`/`get_<a>`/`set_<a>`, `sr`/`sampling_rate`/
`_rave.sampling_rate`).
"""

from __future__ import annotations

import copy
import io
import math
import os
import pathlib
import threading
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from unravel import blocks
from unravel import device as _device
from unravel import limits
from unravel.archive import BUNDLED, DATA_DIR, DEFAULT_MODEL, resolve_model  # noqa: F401
from unravel.errors import UnravelError, without_class

DEFAULT_SR = 44100
# bounds on what a model file may declare in `<method>_params` (a model file is user input:
# these sizes set buffers in Pd and in warmup before anything runs)


@dataclass(frozen=True)
class MethodParams:
    """A method's `<m>_params`: (B, in_channels, T/in_ratio) -> (B, out_channels, T/out_ratio)."""

    in_channels: int
    in_ratio: int
    out_channels: int
    out_ratio: int


@dataclass(frozen=True)
class Layer:
    """A parameter tensor of the model; learned=False for fixed filterbanks (pqmf.*)."""

    name: str
    shape: tuple[int, ...]
    numel: int
    learned: bool


def set_threads(n: int) -> None:
    """Set torch's intra-op thread count (1 is fastest for audio blocks on small machines)."""
    n = max(1, int(n))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _inference_guard():
    """An object that keeps inference mode on in this thread while it lives: torch's own RAII
    guard (what torch.inference_mode() wraps; the public context manager's Python overhead
    costs ~5% on a 1-frame decode of the default model)."""
    guard_cls = getattr(torch._C, "_InferenceMode", None)
    if guard_cls is not None:
        return guard_cls(True)
    ctx = torch.inference_mode()
    ctx.__enter__()
    return _Exit(ctx)


class _Exit:
    """Calls ctx.__exit__ when deleted (fallback for _inference_guard)."""

    def __init__(self, ctx):
        self.ctx = ctx

    def __del__(self):
        self.ctx.__exit__(None, None, None)


def _first_line(e: BaseException) -> str:
    """A short one-line cause: the last line of the message, its first sentence, <= 120 chars."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    line = without_class(lines[-1]) if lines else "unexpected error"
    line = line.split(". ")[0]
    return line if len(line) <= 120 else line[:117] + "..."


def _discover_methods(module: torch.jit.ScriptModule, name: str = "model") -> dict[str, MethodParams]:
    buffers = dict(module.named_buffers(recurse=False))
    if hasattr(module, "get_methods"):
        names = list(module.get_methods())
    else:
        names = [b[: -len("_params")] for b in buffers if b.endswith("_params")]
    methods = {}
    for m in names:
        params = buffers.get(f"{m}_params")
        if params is None or params.numel() != 4 or not hasattr(module, m):
            continue
        values = params.flatten().tolist()
        check_method_params(name, m, values)
        methods[m] = MethodParams(*(int(v) for v in values))
    return methods


def check_method_params(name: str, method: str, values: Sequence) -> None:
    """Refuse `<method>_params` values that are not whole numbers in range: channels
    1..limits.MAX_CHANNELS, ratios 1..limits.MAX_RATIO (and their lcm too), the smallest
    block at most limits.MAX_BLOCK_VALUES values."""
    what = ("input channels", "input ratio", "output channels", "output ratio")
    for v, w in zip(values, what):
        top = limits.MAX_CHANNELS if "channels" in w else limits.MAX_RATIO
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v == int(v) and 1 <= v <= top):
            raise UnravelError(f"{name}: method '{method}' declares {w} {v:g} in {method}_params "
                               f"(must be a whole number from 1 to {top})")
    in_ch, in_r, out_ch, out_r = (int(v) for v in values)
    block = blocks.method_block(in_r, out_r)
    if block > limits.MAX_RATIO:
        raise UnravelError(f"{name}: method '{method}' has ratios {in_r} and {out_r}: their "
                           f"common block {block} exceeds {limits.MAX_RATIO}")
    if max(in_ch * (block // in_r), out_ch * (block // out_r)) > limits.MAX_BLOCK_VALUES:
        raise UnravelError(f"{name}: method '{method}' is too large ({in_ch} x {block // in_r} "
                           f"-> {out_ch} x {block // out_r} values per block, limit {limits.MAX_BLOCK_VALUES})")


def _shape_change(old: dict[str, MethodParams], new: dict[str, MethodParams]) -> str:
    """What differs between two models' methods, in words (the first difference)."""
    for m, a in old.items():
        b = new.get(m)
        if b is None:
            return f"no method '{m}'"
        if b != a:
            return (f"{m} takes {b.in_channels} and gives {b.out_channels} channels "
                    f"(ratios {b.in_ratio}/{b.out_ratio}), was {a.in_channels} and {a.out_channels} "
                    f"({a.in_ratio}/{a.out_ratio})")
    extra = [m for m in new if m not in old]
    return f"new method '{extra[0]}'" if extra else "other methods"


def _module_sr(module: torch.jit.ScriptModule) -> int | None:
    for owner, attr in ((module, "sr"), (module, "sampling_rate"), (getattr(module, "_rave", None), "sampling_rate")):
        if owner is not None and hasattr(owner, attr):
            v = getattr(owner, attr)
            try:
                return int(v.item() if isinstance(v, torch.Tensor) else v)
            except (TypeError, ValueError, RuntimeError):
                continue
    return None


def _convert(current, value):
    """`value` converted to the type of an attribute's `current` value."""
    if isinstance(current, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "on", "yes")
        return bool(value)
    if isinstance(current, int):
        return int(float(value)) if isinstance(value, str) else int(value)
    if isinstance(current, (float, str)):
        return type(current)(value)
    return value


# What the Models of one model file share, per device and process (the objects of a patch
# that load the same file): see _Loaded. Keyed by path, size, modification time and device;
# held weakly: it goes when its last Model does.
_SHARED: "weakref.WeakValueDictionary[tuple, _Loaded]" = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()
_STATEFUL: set[tuple] = set()      # files whose modules keep state (streaming caches)
_LOADING: dict[tuple, threading.Lock] = {}     # one load of a file at a time (see _loading)


class _Loaded:
    """A model file as loaded once and shared. A module that running leaves unchanged is
    shared itself (`module`, the Python wrapper). A module that keeps state in its buffers
    (streaming caches) is kept as a `template` that never runs (its C++ module, in the state
    the file gives), of which every Model runs its own copy: its own buffers and attributes,
    the template's weights (the same tensors) and the same compiled methods. `methods` and
    `sr` are what the first load read from the file."""

    def __init__(self, module, template, methods: dict, sr: int | None, params: list[str]):
        self.module = module
        self.template = template
        self.methods = methods
        self.sr = sr
        self.params = params


def _file_key(p: pathlib.Path, device: torch.device | None = None) -> tuple:
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns, str(device))


def _shared(p: pathlib.Path, device: torch.device) -> _Loaded | None:
    """What the Models of this file on `device` share, or None."""
    with _SHARED_LOCK:
        return _SHARED.get(_file_key(p, device))


def _loading(p: pathlib.Path, device: torch.device) -> threading.Lock:
    """The lock under which Models of this file on `device` look for a shared load and make
    it: two made at once (two objects' control threads) share one load."""
    with _SHARED_LOCK:
        return _LOADING.setdefault(_file_key(p, device), threading.Lock())


def _offer(p: pathlib.Path, device: torch.device, loaded: _Loaded) -> _Loaded:
    """Let later Models of this file on `device` share `loaded`; returns what is shared now
    (another one if another Model was first)."""
    with _SHARED_LOCK:
        return _SHARED.setdefault(_file_key(p, device), loaded)


def _submodule(cmod, path: list[str]):
    for name in path:
        cmod = cmod.getattr(name)
    return cmod


def _tensor(cmod, name: str) -> torch.Tensor:
    """The parameter or buffer of the C++ module `cmod` at dotted `name`."""
    *path, leaf = name.split(".")
    return _submodule(cmod, path).getattr(leaf)


def _copy_sharing_weights(cmod, params: list[str]):
    """A copy of the C++ module `cmod` with its own buffers and attributes, and the same
    parameter tensors (dotted names `params`) as `cmod`."""
    copy_ = _jit_copy(cmod)
    for name in params:
        *path, leaf = name.split(".")
        _submodule(copy_, path).setattr(leaf, _tensor(cmod, name))
    return copy_


def _jitload():
    """unravel._jitload (native/jitload.cpp: the file read and the deep copy made with the
    GIL released, so that the model threads of the objects that play meanwhile, which need
    it once per block, go on), or None when it is not built."""
    try:
        from unravel import _jitload
    except ImportError:
        return None
    return _jitload


def _jit_load(p: pathlib.Path, device: torch.device):
    """torch.jit.load(p, map_location=device), without the GIL where _jitload is built."""
    jl = _jitload()
    if jl is None:
        return torch.jit.load(str(p), map_location=device)
    return torch.jit._recursive.wrap_cpp_module(jl.load(str(p), str(device)))


def _jit_copy(cmod):
    """copy.deepcopy of a C++ script module, without the GIL where _jitload is built."""
    jl = _jitload()
    return copy.deepcopy(cmod) if jl is None else jl.copy(cmod)


def module_bytes(module) -> bytes:
    """A script module as the bytes of a TorchScript file (torch.jit.save), serialized
    without the GIL where _jitload is built."""
    jl = _jitload()
    if jl is not None:
        return jl.save(module._c)
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getvalue()


def _read_module(p: pathlib.Path, device: torch.device):
    """The TorchScript file (on `device`, eval mode), or one clear error."""
    try:
        module = _jit_load(p, device)
    except Exception as e:  # noqa: BLE001 - torch raises several types for bad files
        raise UnravelError(f"{p}: not a TorchScript model ({_first_line(e)})") from None
    module.eval()
    return module


class Model:
    """A loaded nn~-contract TorchScript model. Methods run under `lock` and inference mode,
    on `device` (inputs are copied there, outputs back to the CPU).

    Models of the same file on the same device share what they can (memory, load time): the
    loaded module itself, or where its buffers change as it runs (streaming caches: per-object
    state) its weights and compiled methods (see _Loaded); `own()` gives a Model its private
    copy before anything changes the module (bend, weights, attributes)."""

    def __init__(self, path: os.PathLike, sr: int | None = None, warmup: bool = True,
                 device: str | torch.device = "cpu", share: bool = True):
        self.path = pathlib.Path(path)
        self.lock = threading.RLock()
        self.device = _device.resolve(device)
        self._gpu = None if self.device.type == "cpu" else self.device  # inputs go there
        _device.deterministic(self.device)
        self.moves = 0  # counts the moves between devices (the Bender follows them)
        self.edits = 0  # counts the changes to its module (weights, attributes): see jobproc
        self._sr_override = sr
        self._warmup = warmup
        self._share = share
        self._load()

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        p = self.path
        if not p.is_file():
            raise UnravelError(f"{p}: model file not found")
        if not self._share:
            self._load_file(p)
            return
        with _loading(p, self.device):
            loaded = _shared(p, self.device)
            if loaded is None:
                self._load_file(p)
                return
        if loaded.template is None:           # the very module other Models run
            self._set_module(loaded.module, loaded.module._c, loaded.methods, loaded.sr)
        else:                                  # own buffers, shared weights and code
            self._set_module(None, _copy_sharing_weights(loaded.template, loaded.params),
                             loaded.methods, loaded.sr)
            if self._warmup:
                self.warmup()                  # the state a fresh load would have
        self._loaded = loaded
        self.shared = True

    def _load_file(self, p: pathlib.Path) -> None:
        """Load the file itself; offer it to the next Models of the file (see _Loaded)."""
        module = _read_module(p, self.device)
        try:
            methods = _discover_methods(module, p.name)
        except UnravelError:
            raise
        except Exception as e:  # noqa: BLE001
            raise UnravelError(f"{p}: cannot read the model's methods ({_first_line(e)})") from None
        if not methods:
            raise UnravelError(f"{p}: TorchScript without nn~'s contract (no get_methods() or <method>_params buffers)")
        self._set_module(module, module._c, methods, _module_sr(module))
        self._loaded = None
        self.shared = False
        # Running a module that keeps state (streaming caches) changes its buffers: the
        # warm-up on silence tells, against a template taken before it (a streaming RAVE
        # export's caches take its biases). Such a module is offered as that template, any
        # other as it is.
        offer = self._share and self._warmup is True
        params = [n for n, _ in module.named_parameters()] if offer else []
        template = _copy_sharing_weights(module._c, params) if offer else None
        def changed() -> bool:
            return any(not torch.equal(b, _tensor(template, n)) for n, b in module.named_buffers())
        ran_changed = self._warmup and self.warmup(
            changed if offer and _file_key(p) not in _STATEFUL else None)
        if offer and _file_key(p) not in _STATEFUL and (ran_changed or changed()):
            _STATEFUL.add(_file_key(p))     # the next Models of the file need not look
        if offer:
            stateful = _file_key(p) in _STATEFUL
            mine = _Loaded(None if stateful else module, template if stateful else None,
                           methods, self._file_sr, params)
            self._loaded = _offer(p, self.device, mine)
            self.shared = self._loaded is mine

    def _set_module(self, module, cmod, methods: dict, sr: int | None) -> None:
        """Take `cmod` (a C++ script module; `module` its Python wrapper, or None: made when
        first needed) as the module this Model runs."""
        p = self.path
        self._wrapper, self._cmod = module, cmod
        self._file_sr = sr
        self.methods = methods
        enc, dec, fwd = methods.get("encode"), methods.get("decode"), methods.get("forward")
        self.latent_dims = enc.out_channels if enc else (dec.in_channels if dec else None)
        self.ratio = enc.out_ratio if enc else (dec.in_ratio if dec else None)
        first = next(iter(methods.values()))
        self.in_channels = (enc or fwd or first).in_channels
        self.out_channels = (dec or fwd or first).out_channels
        for m, mp in methods.items():
            if mp.in_channels * self._step(mp) > limits.MAX_BLOCK_VALUES:
                raise UnravelError(f"{p.name}: method '{m}' is too large ({mp.in_channels} x "
                                   f"{self._step(mp)} values per block, limit {limits.MAX_BLOCK_VALUES})")
        self.sr = int(self._sr_override or sr or DEFAULT_SR)
        # per method: (the TorchScript function, input channels, input length step)
        self._run_specs: dict[str, tuple[Callable, int, int]] = {
            m: (cmod._get_method(m), mp.in_channels, self._step(mp)) for m, mp in methods.items()}

    @property
    def module(self) -> torch.jit.ScriptModule:
        """The TorchScript module this Model runs (its Python wrapper, made on first use: a
        copy that shares weights needs none to run)."""
        if self._wrapper is None:
            self._wrapper = torch.jit._recursive.wrap_cpp_module(self._cmod)
        return self._wrapper

    def own(self) -> None:
        """Copy on write: before this Model changes its module (bend, set_weights, an
        attribute), give it a private copy if it shares one, or its weights, with other
        Models. The copy is made in memory from the module as it runs (its state goes on;
        the file is not read again: it may have changed), between two model calls (the
        lock), and keeps the compiled methods."""
        with self.lock:
            if not self.shared:
                return
            # a module shared as it is does not change as it runs: copied outside the lock
            # (the model thread goes on); one with per-Model state between two calls
            steady = self._loaded is not None and self._loaded.template is None
            src = self._cmod
        mine = _jit_copy(src) if steady else None
        with self.lock:
            if self.shared:
                self._set_module(None, mine if mine is not None else _jit_copy(self._cmod),
                                 self.methods, self._file_sr)
                self._loaded = None
                self.shared = False

    def _step(self, mp: MethodParams) -> int:
        """Input length granularity: whole output frames, and whole latent frames for
        audio-to-audio methods such as forward."""
        return blocks.input_step(mp.in_ratio, mp.out_ratio, self.ratio)

    def warmup(self, changed: Callable[[], bool] | None = None) -> bool:
        """Run every method twice on silence: TorchScript's profiling executor profiles the
        first call and optimizes at the second, both slow (170 ms for a streaming RAVE
        export's forward), which a live object's first blocks would otherwise pay.
        Returns whether `changed`, asked after each call, said yes once: running changed the
        module's state (a later call may put it back)."""
        seen = False
        for m, (_, channels, step) in self._run_specs.items():
            x = torch.zeros(1, channels, step)
            try:
                for _ in range(2):
                    self.run(m, x)
                    seen = seen or bool(changed and changed())
            except UnravelError:
                pass  # a method that fails on silence fails later with a clear message
        return seen

    def reload(self) -> None:
        """Reload the model from its file (original weights; shared again with the other
        Models of the same unchanged file), on its current device. A file that now holds a
        model with other methods or shapes is refused (load it instead): the loaded model
        stays."""
        new = Model(self.path, sr=self._sr_override, warmup=self._warmup, device=self.device,
                    share=self._share)
        if new.methods != self.methods:
            raise UnravelError(f"{self.path.name}: the file now holds another model "
                               f"({_shape_change(self.methods, new.methods)}); "
                               f"not reloaded, use 'load' to change models")
        with self.lock:
            for k, v in vars(new).items():
                if k != "lock":
                    setattr(self, k, v)

    def to(self, device: str | torch.device, warmup: bool = True) -> torch.device:
        """Move the model (its weights, bent or not) to `device` ('cpu', 'cuda', ...) and warm
        it up there (with `warmup`, unless it was loaded without); returns the device. Waits
        for a running method (the lock)."""
        target = _device.resolve(device)
        with self.lock:
            if target == self.device:
                return target
            if not self.shared:
                self.module.to(target)      # its weights, bent or not
            self.device = target
            self._gpu = None if target.type == "cpu" else target
            _device.deterministic(target)
            self.moves += 1
            if self.shared:
                # a shared module is the file's as it is: load it (or share it) there instead
                warm, self._warmup = self._warmup, self._warmup and warmup
                try:
                    self._load()
                finally:
                    self._warmup = warm
                return target
            self._run_specs = {m: (self._cmod._get_method(m), c, st)
                               for m, (_, c, st) in self._run_specs.items()}
            if warmup and self._warmup:
                self.warmup()
        return target

    # ------------------------------------------------------------------ running

    def run(self, method: str, x: torch.Tensor, whole_frames: bool = True) -> torch.Tensor:
        """(B, in_ch, n) float32 -> (B, out_ch, m) on the CPU; pads n up to whole frames, crops
        the output to the frames the unpadded input covers (with `whole_frames` False the model
        gets n as it is, as UnRAVEl's encoder passes it, unless n is shorter than one frame);
        decode's optional argument keeps its default.
        Runs under self.lock and inference mode (entered here unless the caller's thread is
        already in it), with denormals flushed to zero (faster where a model makes them; the
        same in every caller: CLI, page, Pd's model and job threads), and leaves the thread
        in plain Python's mode (no flush) afterwards; on a GPU the input is copied there and
        the output back."""
        spec = self._run_specs.get(method)
        if spec is None:
            raise UnravelError(f"{self.path.name}: no method '{method}' (has {', '.join(self.methods)})")
        _, channels, step = spec
        shape = x.shape
        if len(shape) != 3 or shape[1] != channels:
            raise UnravelError(f"{self.path.name}: {method} takes (batch, {channels}, n), got {tuple(shape)}")
        if x.dtype is not torch.float32:
            x = x.to(torch.float32)
        n = shape[2]
        pad = -n % step if whole_frames or n < step else 0
        if pad:
            x = torch.nn.functional.pad(x, (0, pad))
        try:
            with self.lock:
                fn, gpu = self._run_specs[method][0], self._gpu    # as own() or to() left them
                torch.set_flush_denormal(True)
                try:
                    if torch.is_inference_mode_enabled():
                        y = fn(x) if gpu is None else fn(x.to(gpu)).cpu()
                    else:
                        guard = _inference_guard()
                        try:
                            y = fn(x) if gpu is None else fn(x.to(gpu)).cpu()
                        finally:
                            del guard
                finally:
                    torch.set_flush_denormal(False)
        except Exception as e:  # noqa: BLE001 - TorchScript errors come as several types
            raise UnravelError(f"{self.path.name}: {method} failed ({_first_line(e)})") from None
        if pad:
            mp = self.methods[method]
            y = y[..., : -(-n * mp.in_ratio // mp.out_ratio)]
        return y

    def encode(self, audio: np.ndarray, whole_frames: bool = True) -> np.ndarray:
        """(C, n) float32 audio at self.sr, C == in_channels -> (D, T) float32 latents
        (`whole_frames`: see `run`)."""
        a = np.asarray(audio, dtype=np.float32)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2 or a.shape[0] != self.in_channels:
            raise UnravelError(f"{self.path.name}: encode takes ({self.in_channels}, n) audio, got {a.shape}")
        return self.run("encode", torch.from_numpy(np.ascontiguousarray(a))[None],
                        whole_frames)[0].numpy()

    def decode(self, z: np.ndarray) -> np.ndarray:
        """(D, T) latents -> (out_channels, T * ratio) float32 audio."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[0] != self.latent_dims:
            raise UnravelError(f"{self.path.name}: decode takes ({self.latent_dims}, T) latents, got {z.shape}")
        return self.run("decode", torch.from_numpy(np.ascontiguousarray(z))[None])[0].numpy()

    def forward(self, audio: np.ndarray) -> np.ndarray:
        """(C, n) audio -> (out_channels, n) audio through the model's forward."""
        a = np.asarray(audio, dtype=np.float32)
        if a.ndim == 1:
            a = a[None]
        return self.run("forward", torch.from_numpy(np.ascontiguousarray(a))[None])[0].numpy()

    # ------------------------------------------------------------------ attributes

    def attributes(self) -> list[str]:
        """The model's attribute names (get_attributes(), without 'none')."""
        if not hasattr(self.module, "get_attributes"):
            return []
        return [a for a in self.module.get_attributes() if a != "none"]

    def get_attribute(self, name: str) -> list:
        """The attribute's current value(s) as a list."""
        if name not in self.attributes() or not hasattr(self.module, f"get_{name}"):
            raise UnravelError(f"{self.path.name}: no attribute '{name}'")
        with self.lock:
            v = getattr(self.module, f"get_{name}")()
        if isinstance(v, (list, tuple)):
            return [x.item() if isinstance(x, torch.Tensor) and x.numel() == 1 else x for x in v]
        return [v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v]

    def set_attribute(self, name: str, values: list) -> None:
        """Set an attribute; values are converted to the types of the current value(s)."""
        current = self.get_attribute(name)
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if len(values) != len(current):
            raise UnravelError(f"{self.path.name}: attribute '{name}' takes {len(current)} value(s), got {len(values)}")
        try:
            args = [_convert(c, v) for c, v in zip(current, values)]
        except (TypeError, ValueError):
            raise UnravelError(f"{self.path.name}: bad value {values} for attribute '{name}'") from None
        if any(isinstance(a, float) and not math.isfinite(a) for a in args):
            raise UnravelError(f"{self.path.name}: attribute '{name}' takes finite numbers, "
                               f"got {' '.join(str(v) for v in values)}")
        if getattr(self.module, f"set_{name}", None) is None:
            raise UnravelError(f"{self.path.name}: attribute '{name}' is read-only")
        self.own()
        setter = getattr(self.module, f"set_{name}")
        try:
            with self.lock:
                rc = setter(*args)
                self.edits += 1
        except Exception as e:  # noqa: BLE001
            raise UnravelError(f"{self.path.name}: cannot set '{name}' ({_first_line(e)})") from None
        if rc not in (0, None):
            raise UnravelError(f"{self.path.name}: model refused {name} = {values} (code {rc})")

    def save(self, path: os.PathLike, force: bool = False) -> pathlib.Path:
        """Save the module as it is (bent or not) as a TorchScript file (nn~'s contract kept)
        through safewrite: an existing file only with `force`, nothing left behind on
        failure. Serialized in memory first (torch's file writer aborts the process on a
        full disk), from the CPU (the file loads on any machine)."""
        from unravel.safewrite import write_bytes
        path = pathlib.Path(path)
        if not path.parent.is_dir():
            raise UnravelError(f"{path}: cannot write (no such folder)")
        if self.device.type == "cpu":
            # edits come from the thread that saves; calls change nothing but streaming caches
            data = module_bytes(self.module)
        else:
            with self.lock:
                device = self.device
                self.to("cpu", warmup=False)
                try:
                    data = module_bytes(self.module)
                finally:
                    self.to(device, warmup=False)
        return write_bytes(path, data, force=force)

    # ------------------------------------------------------------------ layers and info

    def layers(self) -> list[Layer]:
        """Every parameter tensor; fixed filterbanks (pqmf.*, or frozen among trainable
        weights) are flagged learned=False."""
        params = list(self.module.named_parameters())
        any_trainable = any(p.requires_grad for _, p in params)
        return [
            Layer(n, tuple(p.shape), p.numel(),
                  not ("pqmf" in n.split(".") or (any_trainable and not p.requires_grad)))
            for n, p in params
        ]

    def num_parameters(self) -> int:
        """Total number of parameter elements."""
        return sum(p.numel() for p in self.module.parameters())

    def buffers(self) -> list[Layer]:
        """The state dict's buffers (tensors that are not parameters: method shapes, caches,
        filterbanks), all flagged learned=False."""
        return [Layer(n, tuple(b.shape), b.numel(), False) for n, b in self.module.named_buffers()]

    def classes(self) -> dict:
        """The class names UnRAVEl's inspector shows: `encoder` (and `encoder_inner`, the
        encoder it wraps, e.g. WasserteinEncoder around EncoderV2), `decoder` (e.g.
        GeneratorV2), from `encoder`/`decoder` or a legacy `_rave.` submodule; `stereo`,
        the model's flag. None where the model does not have it."""
        def name(*path: str) -> str | None:
            m = self.module
            for part in path:
                m = getattr(m, part, None)
                if not isinstance(m, torch.nn.Module):
                    return None
            return getattr(m, "original_name", type(m).__name__)

        root = () if name("encoder") or name("decoder") else ("_rave",)
        stereo = getattr(self.module, "stereo", None)
        return {"encoder": name(*root, "encoder"), "encoder_inner": name(*root, "encoder", "encoder"),
                "decoder": name(*root, "decoder"),
                "stereo": bool(stereo) if isinstance(stereo, (bool, int)) else None}

    def info(self) -> dict:
        """JSON-able summary: path, sr, methods, latent dims, ratio, attributes, encoder and
        decoder classes, stereo flag, layers (parameters) and buffers."""
        return {
            "path": str(self.path),
            "sr": self.sr,
            "methods": {m: vars(mp).copy() for m, mp in self.methods.items()},
            "latent_dims": self.latent_dims,
            "ratio": self.ratio,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "attributes": {a: self.get_attribute(a) for a in self.attributes()},
            "parameters": self.num_parameters(),
            **self.classes(),
            "layers": [{"name": l.name, "shape": list(l.shape), "numel": l.numel, "learned": l.learned}
                       for l in self.layers()],
            "buffers": [{"name": b.name, "shape": list(b.shape), "numel": b.numel}
                        for b in self.buffers()],
        }


def load_model(spec: str | os.PathLike, sr: int | None = None, threads: int = 1, warmup: bool = True,
               search: Sequence[os.PathLike] = (), device: str | torch.device = "cpu",
               share: bool = True) -> Model:
    """Resolve `spec` (see resolve_model), load it on `device` (or share the module other
    Models of the file loaded there, see Model), warm every method up."""
    set_threads(threads)
    return Model(resolve_model(spec, search), sr=sr, warmup=warmup, device=device, share=share)
