"""Add, Sub, Mul, Div, Sum with broadcasting (squeeze-excitation gates, residual sums, scalings),
and the elementwise functions of decomposed layers (Neg, Abs, Sqrt, Exp, Log, Erf, Reciprocal,
Floor, Ceil, Pow)."""

from __future__ import annotations

import keyword
import re

from cnnkit.nn import Add
from cnnkit.onnx.layers.arith import BINARY
from cnnkit.onnx.layers.unary import Pow, Unary
from cnnkit.onnx.registry import NodeContext, register

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_RESERVED = {"op", "position", "name", "constant", "holds", "training", "forward", "backward"}


def _parameter_name(initializer: str) -> str:
    """The attribute for a held initializer: its last dotted component ("bias" of "fc.bias")
    when that is a plain lower-case name, else "weight"."""
    last = initializer.rsplit(".", 1)[-1]
    ok = _IDENTIFIER.fullmatch(last) and not keyword.iskeyword(last) and last not in _RESERVED
    return last if ok else "weight"


@register("Add", "Sub", "Mul", "Div")
def binary(ctx: NodeContext):
    """a (op) b -> Add, Sub, Mul or Div; a constant operand is held (an initializer as a
    trainable Parameter)."""
    layer = BINARY[ctx.op_type.lower()]
    for held, data in ((1, 0), (0, 1)):
        value = ctx.constant(held)
        if value is None:
            continue
        if ctx.is_initializer(held) and value.dtype.kind == "f":
            name = _parameter_name(ctx.node.input[held])
            return layer(ctx.parameter(held), position=held, name=name), (data,)
        operand = value.astype(ctx.dtype) if value.dtype.kind == "f" else value
        return layer(operand, position=held), (data,)
    return layer(), (0, 1)


@register("Neg", "Abs", "Sqrt", "Exp", "Log", "Erf", "Reciprocal", "Floor", "Ceil")
def unary(ctx: NodeContext):
    """The elementwise functions of decomposed layers -> Unary."""
    return Unary(ctx.op_type.lower())


@register("Pow")
def power(ctx: NodeContext):
    """Pow with a constant exponent -> Pow."""
    return Pow(ctx.require_constant(1, "the exponent"))


@register("Sum")
def sum_(ctx: NodeContext):
    """Sum of every input, with broadcasting -> cnnkit.nn.Add."""
    if not ctx.float_output:
        ctx.fail("Sum of integer tensors is not supported")
    return Add(), tuple(range(len(ctx.node.input)))
