"""Layers with ONNX semantics that cnnkit.nn does not have: broadcasting arithmetic, tensor
reshaping and selection, reductions; each with its backward pass."""

from cnnkit.onnx.layers.arith import Add, Binary, Clip, Div, MatMul, Mul, Sub, unbroadcast
from cnnkit.onnx.layers.reduce import Reduce
from cnnkit.onnx.layers.tensor import (
    Cast,
    Concat,
    Constant,
    ConstantOfShape,
    Expand,
    FlatSoftmax,
    Flatten2d,
    Gather,
    Range,
    Reshape,
    Shape,
    Slice,
    Squeeze,
    Transpose,
    Unsqueeze,
)

__all__ = [
    "Add",
    "Binary",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Div",
    "Expand",
    "FlatSoftmax",
    "Flatten2d",
    "Gather",
    "MatMul",
    "Mul",
    "Range",
    "Reduce",
    "Reshape",
    "Shape",
    "Slice",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
    "unbroadcast",
]
