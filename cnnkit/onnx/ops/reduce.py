"""ReduceMean, ReduceSum, ReduceMax (axes as attribute or, in newer opsets, as input 1)."""

from __future__ import annotations

from cnnkit.nn import Identity
from cnnkit.onnx.layers.reduce import Reduce
from cnnkit.onnx.registry import NodeContext, register


@register("ReduceMean", "ReduceSum", "ReduceMax")
def reduce(ctx: NodeContext):
    """Reduce over ``axes`` (all when absent, none with noop_with_empty_axes), keepdims."""
    axes = ctx.ints_input(1, "axes", "axes")
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            return Identity()
        axes = None
    kind = ctx.op_type[len("Reduce") :].lower()
    return Reduce(kind, axes, keepdims=bool(ctx.attr("keepdims", 1)))
