"""Layers with ONNX semantics that cnnkit.nn does not have: broadcasting arithmetic, tensor
reshaping and selection, reductions; each with its backward pass."""

from cnnkit.onnx.layers.arith import Binary, Clip, MatMul, unbroadcast
from cnnkit.onnx.layers.reduce import Reduce
from cnnkit.onnx.layers.tensor import (
    Cast,
    Concat,
    Constant,
    ConstantOfShape,
    Expand,
    Flatten2d,
    Gather,
    Range,
    Reshape,
    Shape,
    Slice,
    Split,
    Squeeze,
    Transpose,
    Unsqueeze,
)

__all__ = [
    "Binary",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Expand",
    "Flatten2d",
    "Gather",
    "MatMul",
    "Range",
    "Reduce",
    "Reshape",
    "Shape",
    "Slice",
    "Split",
    "Squeeze",
    "Transpose",
    "Unsqueeze",
    "unbroadcast",
]
