"""Conv and ConvTranspose: ONNX convolutions as cnnkit's Conv1d, Conv2d and ConvTranspose2d,
with ONNX's padding forms."""

from __future__ import annotations

import numpy as np

from cnnkit.nn import Conv1d, Conv2d, ConvTranspose2d, Sequential
from cnnkit.onnx.layers.pad import AutoPad2d
from cnnkit.onnx.registry import NodeContext, register


def window_padding(ctx: NodeContext, dims: int = 2):
    """The padding of a window op over ``dims`` spatial axes: a tuple (symmetric), "same"
    (SAME_UPPER), "same_lower", or ((top, bottom), (left, right)) for asymmetric 2-D ONNX pads
    [top, left, bottom, right]."""
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return (0,) * dims
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return "same" if auto_pad == "SAME_UPPER" else "same_lower"
    if auto_pad != "NOTSET":
        ctx.fail(f"auto_pad {auto_pad!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    pads = ctx.ints("pads", (0,) * 2 * dims)
    if len(pads) != 2 * dims:
        ctx.fail(f"pads {pads} must have {2 * dims} entries for {dims} spatial axes")
    if any(p < 0 for p in pads):
        ctx.fail(f"negative pads {pads} are not supported")
    begin, end = pads[:dims], pads[dims:]
    if begin == end:
        return begin
    if dims != 2:
        ctx.fail(f"asymmetric pads {pads} are supported for 2-D windows only")
    return tuple(zip(begin, end, strict=True))


def with_padding(layer, padding, kernel, strides, dilations, value: float = 0.0):
    """``layer`` with its padding set: in place when it is symmetric, explicit or SAME_UPPER
    (the forms cnnkit's 2-D kernels take), behind an AutoPad2d when it is SAME_LOWER (resolved
    at run time from the input size)."""
    if padding == "same_lower":
        return Sequential(AutoPad2d(kernel, strides, dilations, lower=True, value=value), layer)
    layer.padding = padding
    return layer


@register("Conv")
def conv(ctx: NodeContext):
    """Conv (pads, auto_pad, strides, dilations, group) -> Conv2d, or Conv1d for a 1-D kernel,
    its weights as the layer's parameters."""
    weight = ctx.require_constant(1, "the weight")
    dims = weight.ndim - 2
    if dims not in (1, 2):
        ctx.fail(f"only 1-D and 2-D convolutions are supported, got a weight of {weight.shape}")
    kernel = tuple(weight.shape[2:])
    strides, dilations = ctx.ints("strides", (1,) * dims), ctx.ints("dilations", (1,) * dims)
    group = int(ctx.attr("group", 1))
    padding = window_padding(ctx, dims)
    if dims == 1 and padding == "same_lower":
        ctx.fail("auto_pad SAME_LOWER is supported for 2-D convolutions only")
    layer = (Conv2d if dims == 2 else Conv1d)(
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


@register("ConvTranspose")
def conv_transpose(ctx: NodeContext):
    """ConvTranspose (symmetric pads, strides, dilations, group, output_padding) ->
    ConvTranspose2d; output_shape and auto_pad SAME are not supported."""
    weight = ctx.require_constant(1, "the weight")
    if weight.ndim != 4:
        ctx.fail(f"only 2-D transposed convolutions are supported, got a weight of {weight.shape}")
    if ctx.attr("output_shape") is not None:
        ctx.fail("output_shape is not supported (give pads and output_padding)")
    padding = window_padding(ctx)
    if isinstance(padding, str) or isinstance(padding[0], tuple):
        ctx.fail(f"padding {ctx.attr('auto_pad', ctx.ints('pads'))} is not supported (symmetric)")
    group = int(ctx.attr("group", 1))
    layer = ConvTranspose2d(
        weight.shape[0],
        weight.shape[1] * group,
        weight.shape[2:],
        stride=ctx.ints("strides", (1, 1)),
        padding=padding,
        output_padding=ctx.ints("output_padding", (0, 0)),
        groups=group,
        bias=ctx.has_input(2),
        dilation=ctx.ints("dilations", (1, 1)),
        dtype=ctx.dtype,
        rng=np.random.default_rng(0),
    )
    layer.weight = ctx.parameter(1)
    if ctx.has_input(2):
        layer.bias = ctx.parameter(2)
    return layer
