"""Load a TorchScript model that follows nn~'s contract and run its methods.

No acids packages needed: everything comes from the TorchScript file (`get_methods()` or
`<m>_params` buffers, `get_attributes()`/`get_<a>`/`set_<a>`, `sr`/`sampling_rate`/
`_rave.sampling_rate`).

What a method declares and its bounds are in `unravel.methods`; what the Models of one file
share, and the TorchScript reads and copies, in `unravel.modelcache`; what a model holds, for
inspection, in `unravel.modelinfo`.
"""

from __future__ import annotations

import math
import os
import pathlib
import threading
from typing import Callable, Sequence

import numpy as np
import torch

from unravel import device as _device
from unravel import caches, modelcache, modelinfo
from unravel.archive import BUNDLED, DATA_DIR, DEFAULT_MODEL, resolve_model  # noqa: F401
from unravel.errors import UnravelError, short_cause
from unravel.methods import check_block, discover_methods, latent_ratio, shape_change

DEFAULT_SR = 44100


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


# As many warm-ups at once as the process has CPUs: objects opened at once each hold a
# call's working set meanwhile, and more at once than CPUs would not end sooner.
_WARMING = threading.BoundedSemaphore(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                      else os.cpu_count() or 1)


class Model:
    """A loaded nn~-contract TorchScript model. Methods run under `lock` and inference mode,
    on `device` (inputs are copied there, outputs back to the CPU).

    Models of the same file on the same device share what they can (memory, load time): the
    loaded module itself, or where its buffers change as it runs (streaming caches: per-object
    state) its weights and compiled methods (see modelcache.Loaded); `own()` gives a Model its
    private copy before anything changes the module (bend, weights, attributes). `items`:
    the batch items its own streaming caches keep (unravel.caches; None: the export's 64)."""

    def __init__(self, path: os.PathLike, sr: int | None = None, warmup: bool = True,
                 device: str | torch.device = "cpu", share: bool = True, items: int | None = None):
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
        self._items = items    # with _full (the export's, when this Model's caches are fitted)
        self._load(share, warmup)
        self._fresh = self._buffers()

    # ------------------------------------------------------------------ loading

    def _load(self, share: bool, warmup: bool) -> None:
        """Load the file on self.device, or with `share` take what other Models of it share
        there; with `warmup`, warm every method up (see warmup)."""
        p = self.path
        if not p.is_file():
            raise UnravelError(f"{p}: model file not found")
        self._file_key = modelcache.file_key(p)
        self._full, self._batched = None, []
        if not share:
            self._load_file(p, share, warmup)
            return
        with modelcache.loading(p, self.device):
            loaded = modelcache.shared(p, self.device)
            if loaded is None:
                self._load_file(p, share, warmup)
                return
            template = loaded.template_for(self._items)
            # (the copy holds a copy of the weights for a moment: one at a time, and that
            # memory given back at once, or objects opened at once peaked at a copy of the
            # weights each, 380 MB on 8 objects of a capacity-64 export)
            cmod = None
            if loaded.template is not None:
                cmod = modelcache.copy_sharing_weights(template, loaded.params)
                modelcache.give_back_memory()
        if loaded.template is None:           # the very module other Models run
            self._set_module(loaded.module, loaded.module._c, loaded.methods, loaded.sr)
        else:                                  # own buffers, shared weights and code
            self._set_module(None, cmod, loaded.methods, loaded.sr)
            if template is not loaded.template:
                self._full, self._batched = loaded.template, loaded.batched
            if warmup:
                self.warmup()                  # the state a fresh load would have
        self._loaded = loaded
        self.shared = True

    def _load_file(self, p: pathlib.Path, share: bool, warmup: bool) -> None:
        """Load the file itself; with `share`, offer it to the next Models of the file (see
        modelcache.Loaded)."""
        module = modelcache.read_module(p, self.device)
        try:
            methods = discover_methods(module, p.name)
        except UnravelError:
            raise
        except Exception as e:  # noqa: BLE001
            raise UnravelError(f"{p}: cannot read the model's methods ({short_cause(e)})") from None
        if not methods:
            raise UnravelError(f"{p}: TorchScript without nn~'s contract (no get_methods() or <method>_params buffers)")
        self._set_module(module, module._c, methods, modelinfo.sample_rate(module))
        self._loaded = None
        self.shared = False
        # A module that keeps state as it runs (streaming caches, counters) is offered as a
        # template taken before the warm-up, of which each Model runs its own copy (own
        # buffers and attributes, shared weights), any other as it is. What its methods may
        # write is read from their graphs (modelcache.written); the warm-up on silence,
        # against the template, is a second look. A module whose methods may write its
        # weights is not shared at all.
        offer = share and warmup is True
        params = [n for n, _ in module.named_parameters()] if offer else []
        graphs = caches.inlined(module._c) if offer else {}
        writes = modelcache.written(module._c, methods, graphs) if offer else set()
        if any(modelcache.covers(writes, n) for n in params):
            offer, params = False, []
        template = modelcache.copy_sharing_weights(module._c, params) if offer else None
        batched = caches.batched(module._c, graphs) if offer and writes else []
        if batched and self._items is not None:     # its own caches, as many as it uses
            caches.fit(module._c, self._items, names=batched)
            self._full, self._batched = template, batched
        def changed() -> list[str]:
            """The buffers that running changed (they differ from the template's)."""
            return [n for n, b in modelcache.buffers(module._c) if not torch.equal(b, modelcache.tensor(template, n))]
        ran_changed = warmup and self.warmup(
            (lambda: bool(changed())) if offer and not modelcache.is_stateful(p) else None)
        if offer and not modelcache.is_stateful(p) and (writes or ran_changed or changed()):
            modelcache.mark_stateful(p)     # the next Models of the file need not look
        if offer:
            stateful = modelcache.is_stateful(p)
            # the state a copy on write takes: what the graphs say running writes, unless
            # the warm-up changed a buffer they do not name
            missed = any(not modelcache.covers(writes, n) for n in changed())
            state = None if missed or not writes or modelcache.covers(writes, "") else sorted(writes)
            mine = modelcache.Loaded(None if stateful else module, template if stateful else None,
                                     methods, self._file_sr, params, batched, state)
            self._loaded = modelcache.offer(p, self.device, mine)
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
        self.ratio = latent_ratio(methods)
        first = next(iter(methods.values()))
        self.in_channels = (enc or fwd or first).in_channels
        self.out_channels = (dec or fwd or first).out_channels
        for m, mp in methods.items():
            check_block(p.name, m, mp, self.ratio)
        self.sr = int(self._sr_override or sr or DEFAULT_SR)
        self._routes: dict[str, Callable] = {}     # see route
        # per method: (the TorchScript function, input channels, input length step)
        self._run_specs: dict[str, tuple[Callable, int, int]] = {
            m: (cmod._get_method(m), mp.in_channels, mp.step(self.ratio)) for m, mp in methods.items()}

    @property
    def module(self) -> torch.jit.ScriptModule:
        """The TorchScript module this Model runs (its Python wrapper, made on first use: a
        copy that shares weights needs none to run)."""
        if self._wrapper is None:
            self._wrapper = torch.jit._recursive.wrap_cpp_module(self._cmod)
        return self._wrapper

    def file_unchanged(self) -> bool:
        """Whether the model file is still the one this Model was loaded from (not replaced,
        not deleted): only then may a copy of it be read from the file again."""
        try:
            return modelcache.file_key(self.path) == self._file_key
        except OSError:
            return False

    def own(self) -> None:
        """Copy on write: before this Model changes its module (bend, set_weights, an
        attribute), give it a private copy if it shares one, or its weights, with other
        Models. The copy is made in memory from the module as it runs (its state goes on;
        the file is not read again: it may have changed), between two model calls (the
        lock), and keeps the compiled methods."""
        with self.lock:
            if not self.shared:
                return
            # copied outside the lock (the model thread goes on): a module shared as it is
            # (it does not change as it runs), or the template of one with per-Model state
            # (it never runs), whose state this Model then takes between two calls
            loaded = self._loaded
            src = self._cmod if loaded is None or loaded.template is None else loaded.template
        mine = modelcache.jit_copy(src)
        with self.lock:
            if self.shared:
                if src is not self._cmod:
                    modelcache.copy_state(self._cmod, mine, loaded.params, loaded.state)
                self._set_module(None, mine, self.methods, self._file_sr)
                self._loaded = None
                self.shared = False

    def route(self, method: str, fn: Callable | None) -> None:
        """Run `fn(x)` as `method` from the next call on (None: the module's own method again),
        until the module is replaced (a reload, a copy on write); `fn` runs on the module's
        device (unravel.outops makes them)."""
        with self.lock:
            if fn is None:
                self._routes.pop(method, None)
            else:
                self._routes[method] = fn
            _, c, st = self._run_specs[method]
            self._run_specs[method] = (fn or self._cmod._get_method(method), c, st)
            self.edits += 1

    def warmup(self, changed: Callable[[], bool] | None = None) -> bool:
        """Run every method twice on silence: TorchScript's profiling executor profiles the
        first call and optimizes at the second, both slow (170 ms for a streaming RAVE
        export's forward), which a live object's first blocks would otherwise pay.
        Returns whether `changed`, asked after each call, said yes once: running changed the
        module's state (a later call may put it back)."""
        seen = False
        with _WARMING:
            for m, (_, channels, step) in self._run_specs.items():
                x = torch.zeros(1, channels, step)
                try:
                    for _ in range(2):
                        self.run(m, x)
                        seen = seen or bool(changed and changed())
                except UnravelError:
                    pass  # a method that fails on silence fails later with a clear message
            modelcache.give_back_memory()
        return seen

    def _buffers(self) -> dict[str, torch.Tensor]:
        """A copy (on the CPU) of the module's buffers as they are now."""
        with self.lock:
            return {n: b.detach().to("cpu", copy=True) for n, b in modelcache.buffers(self._cmod)}

    def reset(self) -> None:
        """Put the module's buffers (a streaming export's caches) back as they were when
        this Model was loaded and warmed up (with what set_attribute changed since): the next
        call gives what it gives in a fresh Model. Buffers running left as they were are not
        written (a module shared with other Models keeps them)."""
        with self.lock, torch.no_grad():
            for name, fresh in self._fresh.items():
                b = modelcache.tensor(self._cmod, name)
                if not torch.equal(b.cpu(), fresh):
                    b.copy_(fresh)

    def reload(self) -> None:
        """Reload the model from its file (original weights; shared again with the other
        Models of the same unchanged file), on its current device. A file that now holds a
        model with other methods or shapes is refused (load it instead): the loaded model
        stays."""
        new = Model(self.path, sr=self._sr_override, warmup=self._warmup, device=self.device,
                    share=self._share, items=self._items)
        if new.methods != self.methods:
            raise UnravelError(f"{self.path.name}: the file now holds another model "
                               f"({shape_change(self.methods, new.methods)}); "
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
            if self.shared and not self.file_unchanged():
                self.own()                  # the file changed: what runs moves, not the file
            if not self.shared:
                self.module.to(target)      # its weights, bent or not
            self.device = target
            self._gpu = None if target.type == "cpu" else target
            _device.deterministic(target)
            self.moves += 1
            if self.shared:
                # a shared module is the file's as it is: load it (or share it) there instead
                self._load(self._share, self._warmup and warmup)
                self._fresh = self._buffers()
                return target
            self._run_specs = {m: (self._routes.get(m) or self._cmod._get_method(m), c, st)
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
            raise UnravelError(f"{self.path.name}: {method} failed ({short_cause(e)})") from None
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
        if not self._cmod._has_method("get_attributes"):      # no Python wrapper needed
            return []
        return [a for a in self._cmod._get_method("get_attributes")() if a != "none"]

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
            args = [modelinfo.convert_attribute(c, v) for c, v in zip(current, values)]
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
                before = self._buffers()
                rc = setter(*args)
                self.edits += 1
                self._fresh.update((n, b) for n, b in self._buffers().items()
                                   if not torch.equal(b, before[n]))   # part of the fresh state
        except Exception as e:  # noqa: BLE001
            raise UnravelError(f"{self.path.name}: cannot set '{name}' ({short_cause(e)})") from None
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
            data = self._bytes()
        else:
            with self.lock:
                device = self.device
                self.to("cpu", warmup=False)
                try:
                    data = self._bytes()
                finally:
                    self.to(device, warmup=False)
        return write_bytes(path, data, force=force)

    def _bytes(self) -> bytes:
        """The module as a TorchScript file, its batch-sized buffers as the export's."""
        with caches.as_export(self._cmod, self._full, self._items, self._batched, self.lock):
            return modelcache.module_bytes(self.module)

def load_model(spec: str | os.PathLike, sr: int | None = None, threads: int = 1, warmup: bool = True,
               search: Sequence[os.PathLike] = (), device: str | torch.device = "cpu",
               share: bool = True, items: int | None = None) -> Model:
    """Resolve `spec` (see resolve_model), load it on `device` (or share the module other
    Models of the file loaded there, see Model), warm every method up; `items`: see Model."""
    set_threads(threads)
    return Model(resolve_model(spec, search), sr=sr, warmup=warmup, device=device, share=share,
                 items=items)
