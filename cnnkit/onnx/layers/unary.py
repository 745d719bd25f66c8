"""Elementwise functions that decomposed layers are written with (torch.onnx at opset 13 writes
LayerNorm as ReduceMean, Sub, Pow, Sqrt, Div and GELU with Erf): ONNX Neg, Abs, Sqrt, Exp, Log,
Erf, Reciprocal, Floor, Ceil, and Pow with a constant exponent; each forward beside its
derivative, dL/dx = f'(x) * dL/dy."""

from __future__ import annotations

import math

import numpy as np

from cnnkit.nn.module import CachedModule
from cnnkit.onnx.layers.arith import unbroadcast

_erf = np.frompyfunc(math.erf, 1, 1)


def _erf_of(x: np.ndarray) -> np.ndarray:
    return np.asarray(_erf(x), dtype=x.dtype)


FUNCTIONS = {
    "neg": (np.negative, lambda x, y: -np.ones_like(x)),
    "abs": (np.abs, lambda x, y: np.sign(x)),
    "sqrt": (np.sqrt, lambda x, y: 0.5 / y),
    "exp": (np.exp, lambda x, y: y),
    "log": (np.log, lambda x, y: 1 / x),
    "erf": (_erf_of, lambda x, y: (2 / math.sqrt(math.pi)) * np.exp(-x * x)),
    "reciprocal": (np.reciprocal, lambda x, y: -y * y),
    "floor": (np.floor, lambda x, y: np.zeros_like(x)),
    "ceil": (np.ceil, lambda x, y: np.zeros_like(x)),
}
"""name -> (f, f' as a function of x and y = f(x))."""


class Unary(CachedModule):
    """y = f(x) elementwise for f in FUNCTIONS; backward dL/dx = f'(x) dL/dy."""

    def __init__(self, kind: str):
        super().__init__()
        if kind not in FUNCTIONS:
            raise ValueError(f"Unary kind must be one of {', '.join(FUNCTIONS)}, got {kind!r}")
        self.kind = kind

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = FUNCTIONS[self.kind][0](x)
        self._cache = (x, y)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, y = self._take_cache()
        return dout * FUNCTIONS[self.kind][1](x, y).astype(dout.dtype, copy=False)

    def extra_repr(self) -> str:
        return self.kind


class Pow(CachedModule):
    """y = x ** p for a constant exponent p broadcast against x (ONNX Pow, in x's type);
    dL/dx = p x^(p-1) dL/dy, summed over the axes p broadcast x along."""

    def __init__(self, exponent: np.ndarray):
        super().__init__()
        self.exponent = np.asarray(exponent)

    def forward(self, x: np.ndarray) -> np.ndarray:
        p = self.exponent.astype(x.dtype) if x.dtype.kind == "f" else self.exponent
        self._cache = (x, p)
        if p.ndim == 0 and p == 2:
            return x * x
        return np.power(x, p).astype(x.dtype, copy=False)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, p = self._take_cache()
        return unbroadcast(dout * (p * np.power(x, p - 1)), x.shape)

    def extra_repr(self) -> str:
        return f"exponent={self.exponent.tolist()}"
