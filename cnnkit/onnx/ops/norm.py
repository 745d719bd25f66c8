"""BatchNormalization as cnnkit.nn.BatchNorm1d / BatchNorm2d in eval mode."""

from __future__ import annotations

import numpy as np

from cnnkit.nn import BatchNorm1d, BatchNorm2d
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
