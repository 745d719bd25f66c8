"""Elementwise arithmetic with NumPy broadcasting and matrix products (ONNX Add, Sub, Mul, Div,
MatMul), each forward beside its backward.

Broadcasting repeats an operand along the axes where it has size 1 (or that it lacks); the
gradient of that operand is the sum of dL/dy over those axes (:func:`unbroadcast`).
"""

from __future__ import annotations

import numpy as np

from cnnkit.nn.module import CachedModule, Parameter


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    stretched = tuple(
        extra + i for i, s in enumerate(shape) if s == 1 and grad.shape[extra + i] != 1
    )
    return grad.sum(axis=tuple(range(extra)) + stretched).reshape(shape)


def divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b; for integers the quotient truncated toward zero, as ONNX Div (and C) define it."""
    if a.dtype.kind in "iu" and np.result_type(a, b).kind in "iu":
        quotient = np.floor_divide(a, b)
        inexact = (quotient * b != a) & ((a < 0) != (b < 0))
        return quotient + inexact
    return a / b


def _as_operand(value, like: np.ndarray) -> np.ndarray:
    """A baked-in constant in the dtype of the data it meets (float32 model, float64 model)."""
    if value.dtype.kind == "f" and like.dtype.kind == "f" and value.dtype != like.dtype:
        return value.astype(like.dtype)
    return value


class Binary(CachedModule):
    """y = a (op) b with NumPy broadcasting; Add, Sub, Mul and Div set ``op`` (ONNX's four).

    Backward: for add da = dy, db = dy; sub db = -dy; mul da = dy * b, db = dy * a;
    div da = dy / b, db = -dy * y / b; each reduced to its operand's shape by unbroadcast.
    Either both operands come at run time, or one is held by the layer: a trainable Parameter
    (an initializer of the file, under ``name``) or a fixed constant. ``position`` says which
    operand the held one is (0: a, as in 1 - x; 1: b, as in x + bias).
    """

    op = "add"

    def __init__(
        self,
        operand: Parameter | np.ndarray | None = None,
        position: int = 1,
        name: str = "weight",
    ):
        super().__init__()
        self.position, self.name = position, name
        self.constant = operand if isinstance(operand, np.ndarray) else None
        self.holds = operand is not None
        if isinstance(operand, Parameter):
            setattr(self, name, operand)

    def _held(self) -> np.ndarray:
        return self.constant if self.constant is not None else self._parameters[self.name].data

    def forward(self, x: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
        if self.holds:
            held = _as_operand(self._held(), x)
            a, b = (held, x) if self.position == 0 else (x, held)
        else:
            a, b = x, other
        if self.op == "add":
            y = a + b
        elif self.op == "sub":
            y = a - b
        elif self.op == "mul":
            y = a * b
        else:
            y = divide(a, b)
        saved = (a, b) if self.op == "mul" else (b, y) if self.op == "div" else None
        self._cache = (np.shape(a), np.shape(b), saved)
        return y

    def backward(self, dout: np.ndarray):
        a_shape, b_shape, saved = self._take_cache()
        if self.op == "add":
            da, db = dout, dout
        elif self.op == "sub":
            da, db = dout, -dout
        elif self.op == "mul":
            a, b = saved
            da, db = dout * b, dout * a
        else:
            b, y = saved
            da = dout / b
            db = -da * y
        da, db = unbroadcast(da, a_shape), unbroadcast(db, b_shape)
        if not self.holds:
            return da, db
        held_grad, dx = (da, db) if self.position == 0 else (db, da)
        if self.name in self._parameters:
            self._parameters[self.name].grad += held_grad
        return dx

    def extra_repr(self) -> str:
        if not self.holds:
            return ""
        held = self.name if self.constant is None else f"constant{tuple(self.constant.shape)}"
        return held if self.position else f"{held} first"


class Add(Binary):
    """y = a + b with broadcasting (ONNX Add: residual sums, biases)."""

    op = "add"


class Sub(Binary):
    """y = a - b with broadcasting (ONNX Sub)."""

    op = "sub"


class Mul(Binary):
    """y = a * b with broadcasting (ONNX Mul: squeeze-excitation gates, scalings)."""

    op = "mul"


class Div(Binary):
    """y = a / b with broadcasting, truncating for integers (ONNX Div)."""

    op = "div"


BINARY = {cls.op: cls for cls in (Add, Sub, Mul, Div)}


class MatMul(CachedModule):
    """y = a @ b with NumPy's matmul broadcasting (ONNX MatMul); b may be a held ``weight``.

    Backward: da = dy @ b^T, db = a^T @ dy (last two axes), reduced over broadcast batch axes.
    A 1-D operand is treated as NumPy does (a row or a column vector that is then dropped).
    """

    def __init__(self, weight: Parameter | None = None):
        super().__init__()
        self.holds = weight is not None
        if weight is not None:
            self.weight = weight

    def forward(self, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        if self.holds:
            b = self.weight.data
        self._cache = (a, b)
        return a @ b

    def backward(self, dout: np.ndarray):
        a, b = self._take_cache()
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        d = dout
        if a.ndim == 1:
            d = np.expand_dims(d, -2)
        if b.ndim == 1:
            d = np.expand_dims(d, -1)
        da = unbroadcast(d @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        db = unbroadcast(np.swapaxes(a2, -1, -2) @ d, b2.shape).reshape(b.shape)
        if not self.holds:
            return da, db
        self.weight.grad += db
        return da

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)}" if self.holds else ""


class Clip(CachedModule):
    """y = min(max(x, low), high), either bound optional (ONNX Clip; where low > high every
    output is high). dL/dx = dL/dy strictly inside the bounds, 0 outside (as torch.clamp).
    cnnkit.nn's Hardtanh / ReLU6 / ReLU cover the finite and the [0, inf) cases; this layer
    takes one-sided bounds and integer tensors."""

    def __init__(self, low: float | None = None, high: float | None = None):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = x
        if self.low is not None:
            y = np.maximum(y, np.asarray(self.low).astype(x.dtype))
        if self.high is not None:
            y = np.minimum(y, np.asarray(self.high).astype(x.dtype))
        self._cache = y == x
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self._take_cache()

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"
