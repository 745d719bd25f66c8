"""The converters of every supported ONNX operator, by topic; importing this registers them."""

from cnnkit.onnx.ops import (
    activation,
    arith,
    conv,
    linear,
    norm,
    pool,
    reduce,
    resample,
    tensor,
)

__all__ = [
    "activation",
    "arith",
    "conv",
    "linear",
    "norm",
    "pool",
    "reduce",
    "resample",
    "tensor",
]
