"""Emitters for the layers that cnnkit.onnx.load builds (cnnkit.onnx.layers) and for its shape
computations, so that an imported model, fine-tuned, can be written back as ONNX. Each writes
the operator it was read from; the shape arithmetic is traced like the layers (its inputs come
from Shape nodes of traced values), so the batch stays dynamic."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from cnnkit.functional._args import same_padding
from cnnkit.onnx.emit import emits
from cnnkit.onnx.layers import arith, reduce, tensor, unary
from cnnkit.onnx.layers.lrn import LocalResponseNorm
from cnnkit.onnx.layers.pad import AutoPad2d, ConstantPad
from cnnkit.onnx.layers.resample import ResizeTo
from cnnkit.onnx.layers.tensor import FlatSoftmax
from cnnkit.onnx.trace import ExportError


@emits(arith.Binary)
def binary(b, m, names, xs, y):
    """Add, Sub, Mul, Div; a held Parameter is an initializer under its state_dict key."""
    inputs = list(names)
    if m.holds:
        if m.constant is not None:
            held = b.constant(m.constant)
        else:
            held = b.initializer(f"{b.scope}.{m.name}", m._parameters[m.name].data)
        inputs = [held, names[0]] if m.position == 0 else [names[0], held]
    return b.node(type(m).__name__, inputs)


@emits(arith.MatMul)
def matmul(b, m, names, xs, y):
    """MatMul; a held weight is an initializer."""
    if m.holds:
        names = [names[0], b.initializer(f"{b.scope}.weight", m.weight.data)]
    return b.node("MatMul", names)


@emits(arith.Clip)
def clip(b, m, names, xs, y):
    """Clip with its optional bounds."""
    bounds = ["" if v is None else b.constant(v, xs[0].dtype) for v in (m.low, m.high)]
    while bounds and bounds[-1] == "":
        bounds.pop()
    return b.node("Clip", [names[0], *bounds])


@emits(unary.Unary)
def unary_function(b, m, names, xs, y):
    """Neg, Abs, Sqrt, Exp, Log, Erf, Reciprocal, Floor, Ceil."""
    op = {"neg": "Neg", "abs": "Abs", "sqrt": "Sqrt", "exp": "Exp", "log": "Log", "erf": "Erf"}
    op.update(reciprocal="Reciprocal", floor="Floor", ceil="Ceil")
    return b.node(op[m.kind], names)


@emits(unary.Pow)
def power(b, m, names, xs, y):
    """Pow with its constant exponent."""
    return b.node("Pow", [names[0], b.constant(m.exponent)])


@emits(tensor.Reshape)
def reshape(b, m, names, xs, y):
    """Reshape to the held shape or the computed one (0 copies, -1 is inferred)."""
    target = names[1] if len(names) > 1 else b.constant(m.shape, np.int64)
    return b.node("Reshape", [names[0], target], allowzero=int(m.allowzero))


@emits(tensor.Shape)
def shape(b, m, names, xs, y):
    """Shape (start and end as attributes, opset 15 on; a Slice of it before)."""
    if m.start == 0 and m.end is None:
        return b.node("Shape", names)
    if b.opset >= 15:
        return b.node("Shape", names, start=m.start, end=m.end)
    end = np.iinfo(np.int64).max if m.end is None else m.end
    bounds = [b.constant([m.start], np.int64), b.constant([end], np.int64)]
    return b.node("Slice", [b.node("Shape", names), *bounds])


@emits(tensor.Concat)
def concat(b, m, names, xs, y):
    """Concat(axis) of the shape arithmetic."""
    return b.node("Concat", names, axis=m.axis)


@emits(tensor.Slice)
def slice_(b, m, names, xs, y):
    """Slice with the bounds it read (or held)."""
    if len(names) > 1:
        return b.node("Slice", names)
    held = [b.constant(bound, np.int64) for bound in m.bounds]
    return b.node("Slice", [names[0], *held])


@emits(tensor.Expand)
def expand(b, m, names, xs, y):
    """Expand to the computed shape."""
    return b.node("Expand", names)


@emits(tensor.ConstantOfShape)
def constant_of_shape(b, m, names, xs, y):
    """ConstantOfShape(value)."""
    value = onnx.numpy_helper.from_array(np.asarray(m.value).reshape(1))
    return b.node("ConstantOfShape", names, value=value)


@emits(tensor.Range)
def range_(b, m, names, xs, y):
    """Range(start, limit, delta)."""
    return b.node("Range", names)


@emits(ResizeTo)
def resize_to(b, m, names, xs, y):
    """Resize to the computed sizes, with the rules it was read with."""
    if m.mode == "nearest":
        attrs = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    elif m.align_corners:
        attrs = {"coordinate_transformation_mode": "align_corners"}
    else:
        half = "pytorch_half_pixel" if m.pytorch_half_pixel else "half_pixel"
        attrs = {"coordinate_transformation_mode": half}
    mode = "nearest" if m.mode == "nearest" else "linear"
    return b.node("Resize", [names[0], "", "", names[1]], mode=mode, **attrs)


@emits(tensor.Transpose)
def transpose(b, m, names, xs, y):
    """Transpose(perm)."""
    return b.node("Transpose", names, perm=None if m.perm is None else list(m.perm))


@emits(tensor.Squeeze, tensor.Unsqueeze)
def squeeze(b, m, names, xs, y):
    """Squeeze / Unsqueeze with axes as input 1 (opset 13 on)."""
    axes = [] if m.axes is None else [b.constant(m.axes, np.int64)]
    return b.node(type(m).__name__, [names[0], *axes])


@emits(tensor.Flatten2d)
def flatten(b, m, names, xs, y):
    """Flatten(axis)."""
    return b.node("Flatten", names, axis=m.axis)


@emits(tensor.Gather)
def gather(b, m, names, xs, y):
    """Gather(axis) with the held indices."""
    return b.node("Gather", [names[0], b.constant(m.indices, np.int64)], axis=m.axis)


@emits(tensor.Cast)
def cast(b, m, names, xs, y):
    """Cast(to)."""
    target = b.dtype if m.dtype_to.kind == "f" else m.dtype_to
    return b.node("Cast", names, to=int(helper.np_dtype_to_tensor_dtype(target)))


@emits(reduce.Reduce)
def reduction(b, m, names, xs, y):
    """ReduceMean / ReduceSum / ReduceMax over the held axes (attribute below opset 18)."""
    op = f"Reduce{m.kind.capitalize()}"
    attrs = {"keepdims": int(m.keepdims)}
    if m.axes is None:
        return b.node(op, names, **attrs)
    if b.opset >= 18 or op == "ReduceSum" and b.opset >= 13:
        return b.node(op, [names[0], b.constant(m.axes, np.int64)], **attrs)
    return b.node(op, names, axes=list(m.axes), **attrs)


@emits(ConstantPad)
def constant_pad(b, m, names, xs, y):
    """Pad (constant) with the held pads and value."""
    value = b.constant(m.value, xs[0].dtype)
    return b.node("Pad", [names[0], b.constant(m.pads, np.int64), value], mode="constant")


@emits(AutoPad2d)
def auto_pad(b, m, names, xs, y):
    """SAME padding resolved for the traced size -> Pad."""
    if xs[0].ndim != 4:
        raise ExportError(f"layer {b.scope!r}: AutoPad2d of a {xs[0].ndim}-D input")
    pads = [
        same_padding(xs[0].shape[2 + i], m.kernel[i], m.stride[i], m.dilation[i]) for i in (0, 1)
    ]
    if m.lower:
        pads = [(after, before) for before, after in pads]
    (top, bottom), (left, right) = pads
    full = b.constant([0, 0, top, left, 0, 0, bottom, right], np.int64)
    return b.node("Pad", [names[0], full, b.constant(m.value, xs[0].dtype)], mode="constant")


@emits(FlatSoftmax)
def flat_softmax(b, m, names, xs, y):
    """Softmax over the axes from ``axis`` taken together: Flatten, Softmax, Reshape back."""
    op = "LogSoftmax" if m.log else "Softmax"
    rows = b.node(op, [b.node("Flatten", names, axis=m.axis)], axis=1)
    return b.node("Reshape", [rows, b.node("Shape", names)])


@emits(LocalResponseNorm)
def local_response_norm(b, m, names, xs, y):
    """LRN(size, alpha, beta, bias)."""
    return b.node("LRN", names, size=m.size, alpha=m.alpha, beta=m.beta, bias=m.k)
