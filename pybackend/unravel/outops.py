"""Ops on a layer's output that its weights cannot express (offset, threshold, clamp), put
into a loaded TorchScript export without the model's Python source.

A submodule's own `forward` graph belongs to its type, which other layers of the same
configuration share (a RAVE v2 export: 54 convolutions, 25 types), so it cannot be edited
for one layer. The top module's type is the export's own: its method (`encode`, `decode`,
`forward`) is inlined (on a copy of the graph), the op inserted after every call of the layer
(its convolution or linear op, found by the attribute path of the weight it reads), and the
graph run as a function of the module. The amounts are 0-dim CPU tensors given to that
function as extra inputs, read as numbers at each call: changing one is a `fill_`, no
recompile, and the ops run on the module's device. `bake` writes them into a
module's own methods as constants instead, so that the result saves as a TorchScript file.
"""

from __future__ import annotations

import itertools
from typing import Callable

import torch

from unravel.errors import UnravelError
from unravel.operations import OUTPUT_OPS as OPS

VALUES = {"offset": 1, "threshold": 1, "clamp": 2}    # the numbers each op takes
ORDER = ("threshold", "offset", "clamp")               # the order on one layer's output
CALLS = ("aten::conv1d", "aten::conv2d", "aten::conv_transpose1d", "aten::conv_transpose2d",
         "aten::_convolution", "aten::linear")          # a layer's op, weight its 2nd input
Ops = dict[str, dict[str, list]]    # module path -> op -> its values (floats or tensors)
_names = itertools.count()


def module_path(layer: str) -> str:
    """The submodule of a layer named by its module path or by its weight or bias."""
    return layer.rsplit(".", 1)[0] if layer.endswith((".weight", ".bias")) else layer


def _attr_path(v: torch.Value, top: torch.Value) -> str | None:
    """The dotted attribute path of `v` from the graph's `self` (None if not an attribute)."""
    parts = []
    while v is not top:
        n = v.node()
        if n.kind() != "prim::GetAttr":
            return None
        parts.append(n.s("name"))
        v = n.input()
    return ".".join(reversed(parts))


def _calls(g: torch.Graph) -> dict[str, list[torch.Node]]:
    """Module path -> the nodes (in any block) that call that layer's convolution or linear op."""
    top, found = next(g.inputs()), {}
    for kind in CALLS:
        for n in g.findAllNodes(kind):
            path = _attr_path(list(n.inputs())[1], top)
            if path is not None and path.endswith(".weight"):
                found.setdefault(path[: -len(".weight")], []).append(n)
    return found


def _insert(g: torch.Graph, node: torch.Node, op: str, values: list[torch.Value]) -> torch.Node:
    """Put `op` on node's output: every later use sees its result. Returns the op's last node."""
    out = node.output()
    scalars = []
    for v in values:    # a 0-dim CPU tensor read as a number: the op runs on any device
        if v.type().kind() == "TensorType":
            item = g.create("aten::item", [v])
            item.output().setType(torch._C.NumberType.get())
            item.insertAfter(node)
            node, v = item, item.output()
        scalars.append(v)
    values = scalars
    if op == "offset":
        one = g.insertConstant(1)
        one.node().moveBefore(node)
        new = [g.create("aten::add", [out, values[0], one])]
    elif op == "threshold":     # what is at or below the value becomes 0
        zero = g.insertConstant(0.0)
        zero.node().moveBefore(node)
        above = g.create("aten::gt", [out, values[0]])
        new = [above, g.create("aten::where", [above.output(), out, zero])]
    else:
        new = [g.create("aten::clamp", [out, values[0], values[1]])]
    last = node
    for n in new:
        n.insertAfter(last)
        n.output().setType(torch._C.TensorType.get() if n.kind() == "aten::gt" else out.type())
        last = n
    out.replaceAllUsesAfterNodeWith(last, last.output())
    return last


def layer_calls(cmod, method: str) -> dict[str, int]:
    """Module path -> how many times `method` (inlined) calls that layer."""
    g = cmod._get_method(method).graph.copy()
    torch._C._jit_pass_inline(g)
    return {k: len(v) for k, v in _calls(g).items()}


def _rewrite(g: torch.Graph, ops: Ops, value: Callable) -> int:
    """Inline `g` in place and insert `ops`, their values from `value(g, node, layer, op, i)`;
    returns how many calls were changed."""
    torch._C._jit_pass_inline(g)
    calls, changed = _calls(g), 0
    for layer, layer_ops in ops.items():
        for node in calls.get(layer, []):
            for op in ORDER:
                if op in layer_ops:
                    node = _insert(g, node, op, [value(g, node, layer, op, i) for i in range(VALUES[op])])
            changed += 1
    return changed      # (torch._C._jit_pass_lint(g) passes, but holds the GIL for 50-270 ms)


def build(cmod, method: str, ops: Ops) -> tuple[Callable, int]:
    """`method` of the C++ script module `cmod` with `ops` on its layers' outputs (their
    values: 0-dim tensors, read at each call) as one callable x -> y, and how many layer
    calls it changed (0: none of the layers is in this method)."""
    orig = cmod._get_method(method)
    g = orig.graph.copy()
    inputs: list[torch.Tensor] = []

    def value(g, node, layer, op, i):
        v = g.addInput(f"{op}{len(inputs)}")
        v.setType(torch._C.TensorType.get())
        inputs.append(ops[layer][op][i])
        return v

    changed = _rewrite(g, ops, value)
    if not changed:
        return orig, 0
    fn = torch._C._create_function_from_graph(f"unravel_outops.{method}{next(_names)}", g)
    defaults = [a.default_value for a in orig.schema.arguments[2:]]   # decode's from_forward
    return (lambda x, module=cmod: fn(module, x, *defaults, *inputs)), changed


def bake(cmod, methods: list[str], ops: Ops) -> int:
    """Put `ops` (float values) into `methods` of `cmod` itself as constants, so that it saves
    with them: only on a module no other shares its type with and not yet run (a fresh
    torch.jit.load). All are inlined first (forward may call decode). Returns how many layer
    calls it changed."""
    graphs = [cmod._get_method(m).graph for m in methods]
    for g in graphs:
        torch._C._jit_pass_inline(g)

    def value(g, node, layer, op, i):
        v = g.insertConstant(float(ops[layer][op][i]))
        v.node().moveBefore(node)
        return v

    return sum(_rewrite(g, ops, value) for g in graphs)


def check(op: str, values: list[float]) -> None:
    """A one-line error unless `values` suit `op`."""
    if op not in OPS:
        raise UnravelError(f"output: unknown op '{op}' (one of {', '.join(OPS)})")
    if len(values) != VALUES[op]:
        raise UnravelError(f"output: {op} takes {VALUES[op]} value{'s' if VALUES[op] > 1 else ''}, "
                           f"got {len(values)}")
    if not all(abs(float(v)) < float("inf") for v in values):
        raise UnravelError(f"output: {op} takes finite numbers, got {' '.join(map(str, values))}")
    if op == "clamp" and values[0] > values[1]:
        raise UnravelError(f"output: clamp needs low <= high, got {values[0]:g} {values[1]:g}")


def warm(fn: Callable, copy, x: torch.Tensor) -> None:
    """Run a function of `build` twice on `x` against `copy` (a copy of its module, whose state
    may change): TorchScript's profiling executor compiles it then (up to 1.8 s for a
    streaming RAVE export's forward, bench/output_ops.py), not in the first blocks that play it."""
    for _ in range(2):
        with torch.inference_mode():
            fn(x, copy)
