"""The batch-sized buffers of a streaming export (RAVE's cached convolutions keep each batch
item's last frames in buffers of 64 items, of which every call uses the first `x.shape[0]`),
found in the module's TorchScript graphs and sized to the items an object uses."""

from __future__ import annotations

import contextlib
import threading

import torch


def _graph(cmod, name: str):
    g = cmod._get_method(name).graph.copy()
    torch._C._jit_pass_inline(g)
    return g


def _const(v, want) -> bool:
    """Whether the value `v` is the constant `want` (None, or an int)."""
    n = v.node()
    if n.kind() != "prim::Constant":
        return False
    if want is None:
        return isinstance(v.type(), torch._C.NoneType)
    return n.hasAttribute("value") and n.kindOf("value") == "i" and n.i("value") == want


def _batch_size(v) -> bool:
    """Whether the int `v` is a tensor's first size: `x.shape[0]` or `x.size(0)`."""
    n = v.node()
    args = list(n.inputs())
    if n.kind() == "aten::size":
        return len(args) == 2 and _const(args[1], 0)
    return (n.kind() == "aten::__getitem__" and len(args) == 2 and _const(args[1], 0)
            and args[0].node().kind() == "aten::size" and len(list(args[0].node().inputs())) == 1)


def _leading_slice(use) -> bool:
    """Whether a use of a tensor is `t[:x.shape[0]]` (aten::slice(t, 0, None, k, 1) with k a
    tensor's first size): what reads only as many items as a call has."""
    n = use.user
    if n.kind() != "aten::slice" or use.offset != 0 or len(list(n.inputs())) != 5:
        return False
    _, dim, start, end, step = n.inputs()
    return _const(dim, 0) and _const(start, None) and _const(step, 1) and _batch_size(end)


def inlined(cmod) -> dict:
    """Every method of the C++ script module `cmod` as a copy of its TorchScript graph with
    the calls inlined, by name; one that cannot be read is left out."""
    out = {}
    for m in cmod._method_names():
        try:
            out[m] = _graph(cmod, m)
        except Exception:  # noqa: BLE001 - TorchScript raises several types
            pass
    return out


def batched(cmod, graphs: dict | None = None) -> list[str]:
    """Dotted names of the buffers that every method of the C++ script module `cmod` reads
    only as their first k items (`buf[:x.shape[0]]`, RAVE's cached convolutions): a call on
    a batch of at most n items gives the same output with these buffers cut to n items,
    where the tensor whose first size slices them has the call's batch first (as in RAVE).
    Empty when a graph cannot be read or a tensor attribute cannot be named. `graphs`:
    what `inlined(cmod)` gives, when known."""
    buffers = {n for n, _ in torch._C._jit_debug_module_iterators(cmod)["named_buffers_r"]}  # as modelcache.buffers
    ok: set[str] = set()
    bad: set[str] = set()
    graphs = inlined(cmod) if graphs is None else graphs
    if len(graphs) != len(cmod._method_names()):
        return []                       # a graph we cannot read may read anything
    for g in graphs.values():
        this = next(g.inputs())
        for n in g.findAllNodes("prim::GetAttr", True):
            out = n.output()
            if not isinstance(out.type(), torch._C.TensorType):
                continue
            path, v = [n.s("name")], n.input()
            while v is not this:
                if v.node().kind() != "prim::GetAttr":
                    return []           # an attribute of a module we cannot name
                path.insert(0, v.node().s("name"))
                v = v.node().input()
            name = ".".join(path)
            if name in buffers:
                (ok if all(_leading_slice(u) for u in out.uses()) else bad).add(name)
    return sorted(ok - bad)


def _owner(cmod, name: str):
    *path, leaf = name.split(".")
    for p in path:
        cmod = cmod.getattr(p)
    return cmod, leaf


def items(cmod, names: list[str] | None = None) -> int | None:
    """How many batch items the batch-sized buffers of `cmod` (`names`, else `batched`) hold
    (None: it has none)."""
    sizes = []
    for name in batched(cmod) if names is None else names:
        owner, leaf = _owner(cmod, name)
        sizes.append(owner.getattr(leaf).shape[0])
    return max(sizes) if sizes else None


def fit(cmod, n: int, source=None, names: list[str] | None = None) -> int:
    """Size the batch-sized buffers of the C++ script module `cmod` (see `batched`) to `n`
    items: the first n are kept, and a grown buffer's new items are those of `source` (a
    module of the same file in the state the file gives, e.g. modelcache's template), or
    zeros without one. Calls on at most n items give bit for bit what they give with the
    export's 64-item buffers; fitting again to the same n changes nothing. Returns the bytes
    these buffers hold now. `names`: what `batched(cmod)` gives, when known."""
    if n < 1:
        raise ValueError(f"caches.fit: n must be at least 1, got {n}")
    total = 0
    for name in batched(cmod) if names is None else names:
        owner, leaf = _owner(cmod, name)
        b = owner.getattr(leaf)
        if b.dim() >= 1 and b.shape[0] != n:
            new = torch.zeros((n, *b.shape[1:]), dtype=b.dtype, device=b.device)
            k = min(n, b.shape[0])
            new[:k] = b[:k]
            if source is not None and n > k:
                src_owner, _ = _owner(source, name)
                src = src_owner.getattr(leaf)
                m = min(n, src.shape[0])
                if m > k:
                    new[k:m] = src[k:m]
            owner.setattr(leaf, new)
            b = new
        total += b.numel() * b.element_size()
    return total


@contextlib.contextmanager
def as_export(cmod, source, n: int | None, names: list[str], lock: threading.RLock):
    """While the block runs, the batch-sized buffers of `cmod` (fitted to `n` items) are as
    big as those of `source` (the export's; nothing changes without one), their new items
    taken from it: what a saved file keeps. Grown and cut back under `lock` (the model's:
    calls on at most `n` items read only their own first items meanwhile)."""
    if source is None or n is None:
        yield
        return
    with lock:
        fit(cmod, items(source, names), source, names)
    try:
        yield
    finally:
        with lock:
            fit(cmod, n, names=names)
