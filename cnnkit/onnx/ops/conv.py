"""Conv: ONNX convolutions as cnnkit.nn.Conv2d, with ONNX's padding forms."""

from __future__ import annotations

import numpy as np

from cnnkit.nn import Conv2d, Sequential
from cnnkit.onnx.layers.pad import AutoPad2d
from cnnkit.onnx.registry import NodeContext, register


def window_padding(ctx: NodeContext, kernel, strides, dilations):
    """The padding of a 2-D window op: a pair (symmetric), "same" (SAME_UPPER), "same_lower",
    or ((top, bottom), (left, right)) for asymmetric ONNX pads [top, left, bottom, right]."""
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return (0, 0)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return "same" if auto_pad == "SAME_UPPER" else "same_lower"
    if auto_pad != "NOTSET":
        ctx.fail(f"auto_pad {auto_pad!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    pads = ctx.ints("pads", (0, 0, 0, 0))
    if len(pads) != 4:
        ctx.fail(f"pads {pads} must have 4 entries (2-D windows only)")
    if any(p < 0 for p in pads):
        ctx.fail(f"negative pads {pads} are not supported")
    top, left, bottom, right = pads
    if (top, left) == (bottom, right):
        return (top, left)
    return ((top, bottom), (left, right))


def with_padding(layer, padding, kernel, strides, dilations, value: float = 0.0):
    """``layer`` with its padding set: in place when it is symmetric, explicit or SAME_UPPER,
    behind an AutoPad2d when it is SAME_LOWER (resolved at run time from the input size)."""
    if padding == "same_lower":
        return Sequential(AutoPad2d(kernel, strides, dilations, lower=True, value=value), layer)
    layer.padding = padding
    return layer


@register("Conv")
def conv(ctx: NodeContext):
    """Conv (pads, auto_pad, strides, dilations, group) -> Conv2d, weights as its parameters."""
    weight = ctx.require_constant(1, "the weight")
    if weight.ndim != 4:
        ctx.fail(f"only 2-D convolutions are supported, got a weight of shape {weight.shape}")
    kernel = tuple(weight.shape[2:])
    strides, dilations = ctx.ints("strides", (1, 1)), ctx.ints("dilations", (1, 1))
    group = int(ctx.attr("group", 1))
    padding = window_padding(ctx, kernel, strides, dilations)
    layer = Conv2d(
        weight.shape[1] * group,
        weight.shape[0],
        kernel,
        stride=strides,
        dilation=dilations,
        groups=group,
        bias=ctx.has_input(2),
        dtype=ctx.dtype,
        rng=np.random.default_rng(0),
    )
    layer.weight = ctx.parameter(1)
    if ctx.has_input(2):
        layer.bias = ctx.parameter(2)
    return with_padding(layer, padding, kernel, strides, dilations)
