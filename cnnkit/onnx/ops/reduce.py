"""ReduceMean, ReduceSum, ReduceMax (axes as attribute or, in newer opsets, as input 1)."""

from __future__ import annotations

from cnnkit.onnx.layers.reduce import Reduce
from cnnkit.onnx.registry import NodeContext, register


@register("ReduceMean", "ReduceSum", "ReduceMax")
def reduce(ctx: NodeContext):
    """Reduce over ``axes`` (all when absent, none with noop_with_empty_axes), keepdims; axes
    computed at run time are read then."""
    kind = ctx.op_type[len("Reduce") :].lower()
    options = dict(
        keepdims=bool(ctx.attr("keepdims", 1)),
        noop_with_empty_axes=bool(ctx.attr("noop_with_empty_axes", 0)),
    )
    if ctx.has_input(1) and ctx.constant(1) is None:
        return Reduce(kind, **options), (0, 1)
    return Reduce(kind, ctx.ints_input(1, "axes", "axes"), **options)
