"""Gemm, MatMul, Flatten, Dropout, Identity."""

from __future__ import annotations

import numpy as np

from cnnkit.nn import Dropout, Flatten, Identity, Linear, Sequential
from cnnkit.nn.module import Parameter
from cnnkit.onnx.layers.arith import MatMul
from cnnkit.onnx.layers.tensor import Flatten2d, Transpose
from cnnkit.onnx.registry import NodeContext, register


@register("Gemm")
def gemm(ctx: NodeContext):
    """Gemm, y = alpha * A' B' + beta * C with a constant B -> Linear (weight alpha * B', bias
    beta * C broadcast to (out,)), behind a Transpose when transA=1."""
    b = ctx.float_array(1)
    if b is None:
        ctx.fail("B (input 1) must be a constant weight, not computed at run time")
    weight = (b if ctx.attr("transB", 0) else b.T) * ctx.dtype.type(ctx.attr("alpha", 1.0))
    out_features, in_features = weight.shape
    c = ctx.float_array(2)
    if ctx.has_input(2) and c is None:
        ctx.fail("C (input 2) must be a constant bias, not computed at run time")
    if c is not None and c.size not in (1, out_features) or c is not None and c.ndim > 2:
        ctx.fail(f"C of shape {c.shape} is not a bias of {out_features} outputs")
    layer = Linear(
        in_features, out_features, bias=c is not None, dtype=ctx.dtype, rng=np.random.default_rng(0)
    )
    layer.weight = Parameter(np.ascontiguousarray(weight))
    if c is not None:
        beta = ctx.dtype.type(ctx.attr("beta", 1.0))
        layer.bias = Parameter(np.broadcast_to(c.reshape(-1), (out_features,)) * beta)
    return Sequential(Transpose((1, 0)), layer) if ctx.attr("transA", 0) else layer


@register("MatMul")
def matmul(ctx: NodeContext):
    """MatMul -> MatMul holding a constant B as its ``weight``, or of two run-time inputs."""
    if ctx.constant(1) is not None:
        return MatMul(ctx.parameter(1))
    return MatMul(), (0, 1)


@register("Flatten")
def flatten(ctx: NodeContext):
    """Flatten(axis) -> (prod(shape[:axis]), prod(shape[axis:])): Flatten for axis 1."""
    axis = int(ctx.attr("axis", 1))
    return Flatten(1) if axis == 1 else Flatten2d(axis)


@register("Dropout")
def dropout(ctx: NodeContext):
    """Dropout(ratio) -> Dropout(p=ratio): the identity in eval mode, as the model is loaded."""
    ctx.single_output("mask")
    if ctx.has_input(2):
        ctx.fail("the training_mode input is not supported (the layer follows train()/eval())")
    ratio = ctx.constant(1)
    p = float(ctx.attr("ratio", 0.5) if ratio is None else ratio)
    return Dropout(p)


@register("Identity")
def identity(ctx: NodeContext):
    """Identity -> Identity."""
    return Identity()
