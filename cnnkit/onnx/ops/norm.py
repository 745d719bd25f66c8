"""BatchNormalization as cnnkit.nn.BatchNorm1d / BatchNorm2d (in eval mode), and the
normalisations within a sample: InstanceNormalization, LayerNormalization, GroupNormalization,
and LRN (across channels)."""

from __future__ import annotations

import numpy as np

from cnnkit.nn import (
    BatchNorm1d,
    BatchNorm2d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    LayerNorm,
)
from cnnkit.nn.module import Parameter
from cnnkit.onnx.layers.lrn import LocalResponseNorm
from cnnkit.onnx.registry import NodeContext, register


@register("BatchNormalization")
def batch_normalization(ctx: NodeContext):
    """BatchNormalization (inference form) -> BatchNorm2d (4-D input) or BatchNorm1d (2-D, 3-D).

    scale and B become weight and bias, mean and var the running statistics; ONNX's momentum m
    (running = m * running + (1 - m) * batch) is torch's 1 - m.
    """
    if ctx.attr("training_mode", 0) or any(ctx.node.output[1:]):
        ctx.fail("training mode (running statistics as outputs) is not supported")
    if ctx.attr("spatial", 1) != 1:
        ctx.fail("spatial=0 is not supported")
    rank = ctx.rank(0)
    if rank not in (None, 2, 3, 4):
        ctx.fail(f"only 2-D, 3-D and 4-D input is supported, got rank {rank}")
    scale = ctx.require_constant(1, "scale")
    kind = BatchNorm2d if rank in (None, 4) else BatchNorm1d
    momentum = round(1.0 - float(ctx.attr("momentum", 0.9)), 12)
    layer = kind(
        scale.shape[0], eps=float(ctx.attr("epsilon", 1e-5)), momentum=momentum, dtype=ctx.dtype
    )
    layer.weight, layer.bias = ctx.parameter(1), ctx.parameter(2)
    for i, name in ((3, "running_mean"), (4, "running_var")):
        layer.register_buffer(name, np.array(ctx.require_constant(i, name), dtype=ctx.dtype))
    return layer


@register("InstanceNormalization")
def instance_normalization(ctx: NodeContext):
    """InstanceNormalization(epsilon) -> InstanceNorm2d (4-D input) or InstanceNorm1d (3-D),
    affine, with scale and B as its weight and bias."""
    rank = ctx.rank(0)
    if rank not in (None, 3, 4):
        ctx.fail(f"only 3-D and 4-D input is supported, got rank {rank}")
    scale = ctx.require_constant(1, "scale")
    kind = InstanceNorm1d if rank == 3 else InstanceNorm2d
    layer = kind(scale.shape[0], eps=float(ctx.attr("epsilon", 1e-5)), affine=True, dtype=ctx.dtype)
    layer.weight, layer.bias = ctx.parameter(1), ctx.parameter(2)
    return layer


@register("LayerNormalization")
def layer_normalization(ctx: NodeContext):
    """LayerNormalization(axis, epsilon) -> LayerNorm over the axes from ``axis`` on, with
    Scale (and B) of their shape as weight (and bias)."""
    ctx.single_output("Mean / InvStdDev")
    scale = ctx.require_constant(1, "Scale")
    axis, rank = int(ctx.attr("axis", -1)), ctx.rank(0)
    covered = -axis if axis < 0 else None if rank is None else rank - axis
    if covered != scale.ndim:
        ctx.fail(f"Scale of shape {scale.shape} must cover the axes from {axis} on (rank {rank})")
    has_bias = ctx.has_input(2)
    layer = LayerNorm(
        scale.shape, eps=float(ctx.attr("epsilon", 1e-5)), bias=has_bias, dtype=ctx.dtype
    )
    layer.weight = ctx.parameter(1)
    if has_bias:
        layer.bias = ctx.parameter(2)
    return layer


@register("GroupNormalization")
def group_normalization(ctx: NodeContext):
    """GroupNormalization(num_groups, epsilon) -> GroupNorm; scale and bias are per channel
    (opset 21) or per group (opsets 18 to 20, repeated over each group's channels)."""
    groups = int(ctx.attr("num_groups"))
    scale, bias = (
        ctx.require_constant(i, n).astype(ctx.dtype) for i, n in ((1, "scale"), (2, "bias"))
    )
    shape = ctx.shape(0)
    channels = shape[1] if shape is not None and len(shape) > 1 else None
    if ctx.opset < 21 and scale.size == groups:
        if channels is None:
            ctx.fail("per-group scale and bias (opset < 21) need the channel count")
        scale, bias = (np.repeat(v, channels // groups) for v in (scale, bias))
    layer = GroupNorm(groups, scale.size, eps=float(ctx.attr("epsilon", 1e-5)), dtype=ctx.dtype)
    layer.weight, layer.bias = Parameter(scale), Parameter(bias)
    return layer


@register("LRN")
def lrn(ctx: NodeContext):
    """LRN(size, alpha, beta, bias) -> LocalResponseNorm."""
    return LocalResponseNorm(
        int(ctx.attr("size")),
        float(ctx.attr("alpha", 1e-4)),
        float(ctx.attr("beta", 0.75)),
        float(ctx.attr("bias", 1.0)),
    )
