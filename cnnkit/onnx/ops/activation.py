"""Activations: Relu, LeakyRelu, Sigmoid, Tanh, Softmax, LogSoftmax as cnnkit.nn layers."""

from __future__ import annotations

from cnnkit.nn import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from cnnkit.onnx.registry import NodeContext, register


@register("Relu")
def relu(ctx: NodeContext):
    """Relu -> ReLU."""
    return ReLU()


@register("LeakyRelu")
def leaky_relu(ctx: NodeContext):
    """LeakyRelu(alpha) -> LeakyReLU(negative_slope=alpha)."""
    return LeakyReLU(float(ctx.attr("alpha", 0.01)))


@register("Sigmoid")
def sigmoid(ctx: NodeContext):
    """Sigmoid -> Sigmoid."""
    return Sigmoid()


@register("Tanh")
def tanh(ctx: NodeContext):
    """Tanh -> Tanh."""
    return Tanh()


@register("Softmax", "LogSoftmax")
def softmax(ctx: NodeContext):
    """Softmax / LogSoftmax along ``axis`` -> Softmax(dim) / LogSoftmax(dim).

    Before opset 13 the operator flattened the input to 2-D at ``axis`` (default 1); that equals
    a softmax along the axis only when it is the last one, which is what is accepted there.
    """
    layer = Softmax if ctx.op_type == "Softmax" else LogSoftmax
    if ctx.opset >= 13:
        return layer(dim=int(ctx.attr("axis", -1)))
    axis, rank = int(ctx.attr("axis", 1)), ctx.rank(0)
    if rank is None or axis % rank != rank - 1:
        ctx.fail(f"axis {axis} at opset {ctx.opset} needs the input's last axis (rank {rank})")
    return layer(dim=-1)
