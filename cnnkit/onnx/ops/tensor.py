"""Shape and data movement: Constant, Shape, Gather, Reshape, Transpose, Squeeze, Unsqueeze,
Concat, Split, Slice, Cast, Expand, ConstantOfShape, Range."""

from __future__ import annotations

import numpy as np
from onnx import helper

from cnnkit.nn import (
    CircularPad2d,
    Concat,
    ConstantPad2d,
    ReflectionPad2d,
    ReplicationPad2d,
    Split,
)
from cnnkit.onnx.layers import tensor as T
from cnnkit.onnx.layers.pad import ConstantPad
from cnnkit.onnx.registry import NodeContext, register


@register("Constant")
def constant(ctx: NodeContext):
    """Constant -> its value (folded at load time)."""
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in ctx.attrs:
            value = np.asarray(ctx.attrs[key])
            if key.startswith("value_int"):
                value = value.astype(np.int64)
            elif key.startswith("value_float"):
                value = value.astype(np.float32)
            return T.Constant(value), ()
    ctx.fail(f"only tensor and number values are supported, got {sorted(ctx.attrs)}")


@register("Shape")
def shape(ctx: NodeContext):
    """Shape(start, end) -> the input's shape as int64."""
    end = ctx.attr("end")
    return T.Shape(int(ctx.attr("start", 0)), None if end is None else int(end))


@register("Gather")
def gather(ctx: NodeContext):
    """Gather(axis) -> take along axis, with constant indices held."""
    axis = int(ctx.attr("axis", 0))
    indices = ctx.constant(1)
    if indices is None:
        return T.Gather(axis), (0, 1)
    return T.Gather(axis, indices)


@register("Reshape")
def reshape(ctx: NodeContext):
    """Reshape(allowzero) -> Reshape, the target shape held when constant."""
    allowzero = bool(ctx.attr("allowzero", 0))
    target = ctx.constant(1)
    if target is None:
        return T.Reshape(allowzero=allowzero), (0, 1)
    return T.Reshape(tuple(int(s) for s in target), allowzero)


@register("Transpose")
def transpose(ctx: NodeContext):
    """Transpose(perm) -> Transpose."""
    return T.Transpose(ctx.ints("perm"))


@register("Squeeze", "Unsqueeze")
def squeeze(ctx: NodeContext):
    """Squeeze / Unsqueeze with axes as input 1 (opset 13 on) or attribute (before)."""
    axes = ctx.ints_input(1, "axes", "axes")
    if ctx.op_type == "Squeeze":
        return T.Squeeze(axes)
    if axes is None:
        ctx.fail("axes must be given")
    return T.Unsqueeze(axes)


@register("Concat")
def concat(ctx: NodeContext):
    """Concat(axis) of every input -> cnnkit.nn.Concat for float data, the integer Concat for
    shape arithmetic."""
    axis = int(ctx.attr("axis"))
    layer = Concat(axis) if ctx.float_output else T.Concat(axis)
    return layer, tuple(range(len(ctx.node.input)))


@register("Split")
def split(ctx: NodeContext):
    """Split(axis) into the sizes of input 1 / attribute ``split``, or into as many equal parts
    as outputs (the last one shorter: chunks of ceil(size / parts), which needs the size along
    the axis from shape inference) -> cnnkit.nn.Split."""
    axis = int(ctx.attr("axis", 0))
    sizes = ctx.ints_input(1, "split", "split")
    if sizes is None:
        shape, parts = ctx.shape(0), len(ctx.node.output)
        if shape is None or shape[axis] is None:
            ctx.fail(f"a split into {parts} equal parts needs the size of axis {axis}")
        sizes = -(-shape[axis] // parts)
    return Split(sizes, dim=axis)


@register("Slice")
def slice_(ctx: NodeContext):
    """Slice with starts, ends, axes, steps as inputs (opset 10 on) or attributes (before)."""
    if ctx.opset < 10:
        bounds = [ctx.ints(k) for k in ("starts", "ends", "axes")]
        held = tuple(np.array(b if b is not None else range(len(bounds[0]))) for b in bounds)
        return T.Slice(held)
    return T.Slice(), tuple(range(len(ctx.node.input)))


@register("Cast")
def cast(ctx: NodeContext):
    """Cast(to) -> Cast; a cast to any float type gives the model's float type."""
    target = np.dtype(helper.tensor_dtype_to_np_dtype(int(ctx.attr("to"))))
    return T.Cast(ctx.dtype if target.kind == "f" else target)


@register("Expand")
def expand(ctx: NodeContext):
    """Expand -> broadcast to the shape given as input 1."""
    return T.Expand(), (0, 1)


@register("ConstantOfShape")
def constant_of_shape(ctx: NodeContext):
    """ConstantOfShape(value) -> a tensor of the input shape filled with value (default 0.0)."""
    value = ctx.attr("value")
    value = np.zeros(1, dtype=np.float32) if value is None else np.asarray(value)
    return T.ConstantOfShape(value.astype(ctx.dtype) if value.dtype.kind == "f" else value)


@register("Range")
def range_(ctx: NodeContext):
    """Range(start, limit, delta)."""
    return T.Range(), (0, 1, 2)


def _full_pads(ctx: NodeContext, pads: tuple[int, ...], axes: tuple[int, ...]) -> tuple:
    """Pads given for ``axes`` only (opset 18's axes input) spread over every axis."""
    rank = ctx.rank(0)
    if rank is None:
        ctx.fail("the axes input needs the input's rank, which shape inference did not find")
    begin, end = [0] * rank, [0] * rank
    for k, axis in enumerate(axes):
        begin[axis % rank], end[axis % rank] = pads[k], pads[k + len(axes)]
    return tuple(begin + end)


PAD_LAYERS = {
    "constant": ConstantPad2d,
    "reflect": ReflectionPad2d,
    "edge": ReplicationPad2d,
    "wrap": CircularPad2d,
}


@register("Pad")
def pad(ctx: NodeContext):
    """Pad with pads and value as inputs (opset 11 on) or attributes: a 4-D input padded on H, W
    only -> ConstantPad2d, ReflectionPad2d, ReplicationPad2d or CircularPad2d (modes constant,
    reflect, edge, wrap); any other constant padding -> ConstantPad (every axis)."""
    mode = ctx.attr("mode", "constant")
    if mode not in PAD_LAYERS:
        ctx.fail(f"mode {mode!r} is not one of {', '.join(PAD_LAYERS)}")
    pads = ctx.ints_input(1, "pads", "pads")
    if ctx.has_input(3):
        pads = _full_pads(ctx, pads, ctx.ints_input(3, "axes"))
    value = ctx.constant(2)
    value = float(ctx.attr("value", 0.0) if value is None or value.size == 0 else value.flat[0])
    if len(pads) == 8 and not any(pads[:2] + pads[4:6]):
        spatial = (pads[3], pads[7], pads[2], pads[6])  # (left, right, top, bottom)
        if mode == "constant":
            return ConstantPad2d(spatial, value)
        return PAD_LAYERS[mode](spatial)
    if mode != "constant":
        ctx.fail(f"mode {mode!r} pads the last two axes of a 4-D input only, got pads {pads}")
    return ConstantPad(pads, value)
