"""What the Models of one model file share (the objects of a patch that load the same file),
and the TorchScript reads, copies and writes they are made from (without the GIL where
`unravel._jitload` is built).

A shared load (`Loaded`) is kept per file and device, keyed by path, size, modification time
and device, and held weakly: it goes when its last Model does."""

from __future__ import annotations

import copy
import functools
import io
import pathlib
import re
import threading
import weakref

import torch

from unravel import caches
from unravel.errors import UnravelError, short_cause

_SHARED: "weakref.WeakValueDictionary[tuple, Loaded]" = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()
_STATEFUL: set[tuple] = set()      # files whose modules keep state (streaming caches)
_LOADING: dict[tuple, threading.Lock] = {}     # one load of a file at a time (see loading)


class Loaded:
    """A model file as loaded once and shared. A module that running leaves unchanged is
    shared itself (`module`, the Python wrapper). A module that keeps state in its buffers
    (streaming caches) is kept as a `template` that never runs (its C++ module, in the state
    the file gives), of which every Model runs its own copy: its own buffers and attributes,
    the template's weights (the same tensors, dotted names `params`) and the same compiled
    methods. `methods` and `sr` are what the first load read from the file; `batched` the
    template's batch-sized buffers (see unravel.caches)."""

    def __init__(self, module, template, methods: dict, sr: int | None, params: list[str],
                 batched: list[str] | None = None, state: list[str] | None = None):
        self.module = module
        self.template = template
        self.methods = methods
        self.sr = sr
        self.params = params
        self.batched = batched or []
        self.state = state      # what running writes (see written), or None: everything
        self._fitted: dict[int, object] = {}

    def template_for(self, items: int | None):
        """The template whose copies a Model runs: with `items`, one whose batch-sized
        buffers hold that many items (made once; under `loading`'s lock)."""
        if items is None or not self.batched:
            return self.template
        if items not in self._fitted:
            t = copy_sharing_weights(self.template, self.params)
            caches.fit(t, items, names=self.batched)
            self._fitted[items] = t
        return self._fitted[items]


def file_key(p: pathlib.Path, device: torch.device | None = None) -> tuple:
    """The file as it is now (path, size, modification time) on `device`."""
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns, str(device))


def shared(p: pathlib.Path, device: torch.device) -> Loaded | None:
    """What the Models of this file on `device` share, or None."""
    with _SHARED_LOCK:
        return _SHARED.get(file_key(p, device))


def loading(p: pathlib.Path, device: torch.device) -> threading.Lock:
    """The lock under which Models of this file on `device` look for a shared load and make
    it: two made at once (two objects' control threads) share one load."""
    with _SHARED_LOCK:
        return _LOADING.setdefault(file_key(p, device), threading.Lock())


def offer(p: pathlib.Path, device: torch.device, loaded: Loaded) -> Loaded:
    """Let later Models of this file on `device` share `loaded`; returns what is shared now
    (another one if another Model was first)."""
    with _SHARED_LOCK:
        return _SHARED.setdefault(file_key(p, device), loaded)


def is_stateful(p: pathlib.Path) -> bool:
    """Whether the module of this file is known to keep state as it runs (mark_stateful)."""
    return file_key(p) in _STATEFUL


def mark_stateful(p: pathlib.Path) -> None:
    """Remember that the module of this file keeps state (the next Models of it need not look)."""
    _STATEFUL.add(file_key(p))


def _submodule(cmod, path: list[str]):
    for name in path:
        cmod = cmod.getattr(name)
    return cmod


def tensor(cmod, name: str) -> torch.Tensor:
    """The parameter or buffer of the C++ module `cmod` at dotted `name`."""
    *path, leaf = name.split(".")
    return _submodule(cmod, path).getattr(leaf)


def buffers(cmod) -> list[tuple[str, torch.Tensor]]:
    """The buffers of the C++ module `cmod` and its submodules, by dotted name (without the
    Python wrapper of each submodule that `named_buffers` needs)."""
    return torch._C._jit_debug_module_iterators(cmod)["named_buffers_r"]


def copy_sharing_weights(cmod, params: list[str]):
    """A copy of the C++ module `cmod` with its own buffers and attributes, and the same
    parameter tensors (dotted names `params`) as `cmod`."""
    copy_ = jit_copy(cmod)
    for name in params:
        *path, leaf = name.split(".")
        _submodule(copy_, path).setattr(leaf, tensor(cmod, name))
    return copy_


def _attributes(cmod, names: list[str] | None) -> list[tuple[str, object]]:
    """The attributes of `cmod` (dotted names, values; no submodules) under `names` (each an
    attribute or a submodule), or all of them (None)."""
    if names is None:
        every = torch._C._jit_debug_module_iterators(cmod)["named_attributes_r"]
        return [(n, v) for n, v in every if not isinstance(v, torch._C.ScriptModule)]
    out = []
    for name in names:
        *path, leaf = name.split(".")
        value = _submodule(cmod, path).getattr(leaf)
        if isinstance(value, torch._C.ScriptModule):
            out += [(f"{name}.{n}", v) for n, v in _attributes(value, None)]
        else:
            out.append((name, value))
    return out


def copy_state(src, dst, params: list[str], names: list[str] | None = None) -> None:
    """Give the C++ module `dst`, a copy of `src`'s template, the buffers and attributes that
    `src` holds now (what running it changed: `names`, see written, or all), leaving the
    parameters (dotted names `params`)."""
    skip = set(params)
    with torch.no_grad():
        for name, value in _attributes(src, names):
            if name in skip:
                continue
            *path, leaf = name.split(".")
            owner = _submodule(dst, path)
            if isinstance(value, torch.Tensor):
                mine = owner.getattr(leaf)
                if isinstance(mine, torch.Tensor) and mine.shape == value.shape and mine.dtype == value.dtype:
                    mine.copy_(value)
                    continue
                value = value.clone()
            owner.setattr(leaf, value)


def give_back_memory() -> None:
    """Give the memory freed since (a copy, a load's warm-up) back to the system: glibc's
    malloc_trim; each thread's malloc arena keeps what it freed otherwise (2 MB per object
    on a capacity-12 export). The arenas stay per thread, so that objects playing on several
    cores never wait for one lock (issue 24). Nothing where there is no malloc_trim."""
    import ctypes
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _jitload():
    """unravel._jitload (native/jitload.cpp: the file read and the deep copy made with the
    GIL released, so that the model threads of the objects that play meanwhile, which need
    it once per block, go on), or None when it is not built."""
    try:
        from unravel import _jitload
    except ImportError:
        return None
    return _jitload


def jit_load(p: pathlib.Path, device: torch.device):
    """torch.jit.load(p, map_location=device), without the GIL where _jitload is built."""
    jl = _jitload()
    if jl is None:
        return torch.jit.load(str(p), map_location=device)
    return torch.jit._recursive.wrap_cpp_module(jl.load(str(p), str(device)))


def jit_copy(cmod):
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


def read_module(p: pathlib.Path, device: torch.device):
    """The TorchScript file (on `device`, eval mode), or one clear error."""
    try:
        module = jit_load(p, device)
    except Exception as e:  # noqa: BLE001 - torch raises several types for bad files
        raise UnravelError(f"{p}: not a TorchScript model ({short_cause(e)})") from None
    module.eval()
    return module


# ------------------------------------------------------------------ what running writes

_ALIAS = re.compile(r"\(([a-z]+)(!?)\)")   # a schema's alias annotation: (a) or (a!)


def _split_args(text: str) -> list[str]:
    depth, cur, out = 0, "", []
    for c in text:
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        if c == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += c
    return out + [cur] if cur.strip() else out


@functools.lru_cache(maxsize=None)      # a model has a few hundred schemas, read thousands of times
def _schema_aliases(schema: str) -> tuple[list[int], dict[int, int]] | None:
    """From an operator's schema: (the inputs it writes, {output: the input it aliases})."""
    if ") -> " not in schema:
        return None
    args, _, rets = schema.partition(") -> ")
    sets: dict[str, int] = {}
    writes = []
    for i, a in enumerate(_split_args(args[args.index("(") + 1:])):
        m = _ALIAS.search(a.strip().split(" ")[0])
        if m:
            sets.setdefault(m.group(1), i)
            if m.group(2):
                writes.append(i)
    rets = rets.strip()
    rets = rets[1:-1] if rets.startswith("(") else rets
    outs = {}
    for j, r in enumerate(_split_args(rets)):
        m = _ALIAS.search(r.strip().split(" ")[0])
        if m and m.group(1) in sets:
            outs[j] = sets[m.group(1)]
    return writes, outs


def written(cmod, methods, graphs: dict | None = None) -> set[str]:
    """Dotted names of the module's attributes (parameters, buffers, plain attributes) that
    running `methods` may write, read from their TorchScript graphs (inlined; `graphs`:
    what caches.inlined gives, when known): each prim::SetAttr, and each operator that
    writes in place into what an attribute holds (followed through views). "*" stands for
    what cannot be told (everything). A branch on a bool attribute that no method sets is
    followed only where that value leads."""
    out: set[str] = set()
    for m in methods:
        g = (graphs or {}).get(m)
        if g is None:
            try:
                g = cmod._get_method(m).graph.copy()
                torch._C._jit_pass_inline(g)
            except Exception:  # noqa: BLE001 - a graph we cannot read may write anything
                return {"*"}
        out |= _graph_writes(cmod, g)
    return out


def _graph_writes(cmod, g) -> set[str]:
    this = next(g.inputs()).unique()

    def join(base: str, name: str) -> str:
        return f"{base}.{name}" if base else name

    def origin(v) -> str | None:
        """The attribute `v` may be (part of): its dotted name, "" for the module itself,
        "*" when unknown, None for a value of its own (a new tensor, a constant)."""
        if v.unique() == this:
            return ""
        n = v.node()
        if n.kind() == "prim::GetAttr":
            base = origin(n.input())
            return "*" if base in (None, "*") else join(base, n.s("name"))
        if n.kind() in ("prim::Constant", "prim::ListConstruct"):
            return None     # a constant, a new list (appending to it writes no attribute)
        if n.kind().startswith("aten::"):
            aliases = _schema_aliases(n.schema())
            if aliases is None:
                return "*"
            k = [o.unique() for o in n.outputs()].index(v.unique())
            return origin(n.inputsAt(aliases[1][k])) if k in aliases[1] else None
        return "*"          # branch and loop outputs, lists, tuples, the method's inputs

    def set_name(n) -> str:
        base = origin(n.inputsAt(0))
        return "*" if base in (None, "*") else join(base, n.s("name"))

    set_names = {set_name(n) for n in g.findAllNodes("prim::SetAttr", True)}   # anywhere
    out = set()

    def fixed(v) -> bool | None:
        if v.node().kind() != "prim::GetAttr" or not isinstance(v.type(), torch._C.BoolType):
            return None
        name = origin(v)
        if name in (None, "*", "") or name in set_names or "*" in set_names:
            return None
        *path, leaf = name.split(".")
        return bool(_submodule(cmod, path).getattr(leaf))

    def walk(block) -> None:
        for n in block.nodes():
            blocks = list(n.blocks())
            if n.kind() == "prim::If" and fixed(n.input()) is not None:
                blocks = [blocks[0] if fixed(n.input()) else blocks[1]]
            for b in blocks:
                walk(b)
            if n.kind() == "prim::SetAttr":
                out.add(set_name(n))
            aliases = _schema_aliases(n.schema()) if n.kind().startswith("aten::") else None
            for i in (aliases[0] if aliases else []):
                name = origin(n.inputsAt(i))
                if name is not None:
                    out.add(name)
    walk(g)
    return out


def covers(names: set[str], param: str) -> bool:
    """Whether writing `names` (see written) may write the attribute `param`."""
    return any(w in ("*", "") or param == w or param.startswith(w + ".") for w in names)
