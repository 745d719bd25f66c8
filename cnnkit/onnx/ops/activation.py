"""Activations: Relu, LeakyRelu, Sigmoid, Tanh, Softmax, LogSoftmax, Clip, HardSigmoid,
HardSwish, Elu, Softplus, Mish, Gelu, PRelu as cnnkit.nn layers."""

from __future__ import annotations

import numpy as np

from cnnkit.nn import (
    ELU,
    GELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSoftmax,
    Mish,
    PReLU,
    ReLU,
    ReLU6,
    Sequential,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from cnnkit.nn.module import Parameter
from cnnkit.onnx.layers.arith import Add, Clip, Mul
from cnnkit.onnx.layers.tensor import FlatSoftmax
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
    """Softmax / LogSoftmax along ``axis`` -> Softmax(dim) / LogSoftmax(dim); before opset 13
    the operator flattened the input to 2-D at ``axis`` (default 1) -> FlatSoftmax, or the plain
    layer when that axis is known to be the last."""
    layer = Softmax if ctx.op_type == "Softmax" else LogSoftmax
    if ctx.opset >= 13:
        return layer(dim=int(ctx.attr("axis", -1)))
    axis, rank = int(ctx.attr("axis", 1)), ctx.rank(0)
    if rank is not None and axis % rank == rank - 1:
        return layer(dim=-1)
    return FlatSoftmax(axis, log=ctx.op_type == "LogSoftmax")


@register("Clip")
def clip(ctx: NodeContext):
    """Clip(min, max) -> ReLU6 for [0, 6], ReLU for [0, inf), Hardtanh for other finite
    bounds, Clip otherwise (one bound, integer data); the bounds are inputs 1 and 2 (opset 11
    on) or attributes (before)."""
    bounds = []
    for i, name in ((1, "min"), (2, "max")):
        value = ctx.constant(i) if ctx.opset >= 11 else ctx.attr(name)
        if ctx.opset >= 11 and ctx.has_input(i) and value is None:
            ctx.fail(f"{name} (input {i}) must be a constant, not computed at run time")
        bounds.append(None if value is None else np.asarray(value).reshape(-1)[0].item())
    low, high = bounds
    floats = all(isinstance(b, float) or b is None for b in bounds)
    if floats and low == 0 and high == 6:
        return ReLU6()
    if floats and low == 0 and high is None:
        return ReLU()
    if floats and None not in bounds and np.isfinite(bounds).all() and low < high:
        return Hardtanh(low, high)
    return Clip(low, high)


@register("HardSigmoid")
def hard_sigmoid(ctx: NodeContext):
    """HardSigmoid, y = max(0, min(1, alpha x + beta)) -> Hardsigmoid for torch's alpha = 1/6,
    beta = 1/2; else Mul(alpha), Add(beta), then Hardtanh(0, 1)."""
    alpha, beta = float(ctx.attr("alpha", 0.2)), float(ctx.attr("beta", 0.5))
    if abs(alpha - 1 / 6) < 1e-6 and beta == 0.5:
        return Hardsigmoid()
    scale, shift = (np.array(v, dtype=ctx.dtype) for v in (alpha, beta))
    return Sequential(Mul(scale), Add(shift), Hardtanh(0.0, 1.0))


@register("HardSwish")
def hard_swish(ctx: NodeContext):
    """HardSwish -> Hardswish."""
    return Hardswish()


@register("Elu")
def elu(ctx: NodeContext):
    """Elu(alpha) -> ELU(alpha)."""
    return ELU(float(ctx.attr("alpha", 1.0)))


@register("Softplus")
def softplus(ctx: NodeContext):
    """Softplus, log(1 + exp(x)) -> Softplus (beta 1; above 20 it is x within float precision)."""
    return Softplus()


@register("Mish")
def mish(ctx: NodeContext):
    """Mish -> Mish."""
    return Mish()


@register("Gelu")
def gelu(ctx: NodeContext):
    """Gelu(approximate) -> GELU(approximate)."""
    return GELU(ctx.attr("approximate", "none"))


@register("PRelu")
def prelu(ctx: NodeContext):
    """PRelu with a constant slope of one value or one per channel (shape (C,), (C, 1, 1))
    -> PReLU(num_parameters) holding the slope as its weight."""
    slope = ctx.require_constant(1, "the slope")
    rank = ctx.rank(0)
    aligned = slope.ndim == rank - 1 if rank is not None else slope.ndim > 1
    per_channel = aligned and all(s == 1 for s in slope.shape[1:])
    if slope.size != 1 and not per_channel:
        ctx.fail(f"slope of shape {slope.shape} is not one value or one per channel")
    layer = PReLU(slope.size, dtype=ctx.dtype)
    layer.weight = Parameter(np.array(slope.reshape(-1), dtype=ctx.dtype))
    return layer
