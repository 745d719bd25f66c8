"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool as cnnkit's 2-D pooling layers."""

from __future__ import annotations

from cnnkit.nn import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    ConstantPad2d,
    MaxPool2d,
    Sequential,
)
from cnnkit.onnx.layers.reduce import Reduce
from cnnkit.onnx.ops.conv import window_padding, with_padding
from cnnkit.onnx.registry import NodeContext, register


def _window(ctx: NodeContext):
    kernel = ctx.ints("kernel_shape")
    if kernel is None or len(kernel) != 2:
        ctx.fail(f"only 2-D pooling is supported, got kernel_shape {kernel}")
    strides = ctx.ints("strides", (1, 1))
    dilations = ctx.ints("dilations", (1, 1))
    if ctx.op_type == "AveragePool" and dilations != (1, 1):
        ctx.fail(f"dilations {dilations} are not supported (AvgPool2d has none)")
    ctx.single_output("Indices")
    return kernel, strides, dilations, window_padding(ctx)


def _padded(ctx: NodeContext, layer, kernel, strides, dilations, padding, value: float):
    """``layer`` with ``padding``; pads beyond half the kernel (which ONNX allows and cnnkit's
    pooling kernels do not) go into a ConstantPad2d of ``value`` in front of it."""
    if isinstance(padding, str):
        return with_padding(layer, padding, kernel, strides, dilations, value)
    pairs = padding if isinstance(padding[0], tuple) else tuple((p, p) for p in padding)
    if all(max(pairs[i]) <= kernel[i] // 2 for i in range(2)):
        return with_padding(layer, padding, kernel, strides, dilations, value)
    if value == 0 and not layer.count_include_pad:
        ctx.fail(f"pads {ctx.ints('pads')} beyond half the kernel need count_include_pad=1")
    (top, bottom), (left, right) = pairs
    return Sequential(ConstantPad2d((left, right, top, bottom), value), layer)


@register("MaxPool")
def max_pool(ctx: NodeContext):
    """MaxPool (pads, auto_pad, strides, dilations, ceil_mode) -> MaxPool2d, padding with -inf."""
    kernel, strides, dilations, padding = _window(ctx)
    if ctx.attr("storage_order", 0):
        ctx.fail("storage_order=1 is only for the Indices output, which is not supported")
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    layer = MaxPool2d(kernel, strides, dilation=dilations, ceil_mode=ceil_mode)
    return _padded(ctx, layer, kernel, strides, dilations, padding, float("-inf"))


@register("AveragePool")
def average_pool(ctx: NodeContext):
    """AveragePool (pads, auto_pad, strides, count_include_pad, ceil_mode) -> AvgPool2d."""
    kernel, strides, dilations, padding = _window(ctx)
    count_include_pad = bool(ctx.attr("count_include_pad", 0))
    if padding == "same_lower" and not count_include_pad:
        ctx.fail("auto_pad SAME_LOWER with count_include_pad=0 is not supported")
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    layer = AvgPool2d(kernel, strides, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    return _padded(ctx, layer, kernel, strides, dilations, padding, 0.0)


@register("GlobalAveragePool")
def global_average_pool(ctx: NodeContext):
    """GlobalAveragePool -> AdaptiveAvgPool2d(1) (output (N, C, 1, 1))."""
    rank = ctx.rank(0)
    if rank not in (None, 4):
        ctx.fail(f"only 4-D input is supported, got rank {rank}")
    return AdaptiveAvgPool2d((1, 1))


@register("GlobalMaxPool")
def global_max_pool(ctx: NodeContext):
    """GlobalMaxPool -> AdaptiveMaxPool2d(1) for 4-D input, else the maximum over every spatial
    axis kept as size 1 (Reduce)."""
    rank = ctx.rank(0)
    if rank in (None, 4):
        return AdaptiveMaxPool2d((1, 1))
    return Reduce("max", axes=tuple(range(2, rank)), keepdims=True)
