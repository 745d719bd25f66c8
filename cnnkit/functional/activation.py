"""Elementwise activations and softmax, each forward beside its derivative.

For y = A(z) the backward pass is dL/dz = A'(z) * dL/dy; the cache keeps whichever of z or y
gives A' most cheaply.
"""

from __future__ import annotations

import numpy as np

from cnnkit.functional import _compiled


def _compiled_relu_takes(*arrays: np.ndarray) -> bool:
    """Whether the compiled ReLU loops run: numba on, float data, same-shape C-contiguous arrays."""
    return (
        _compiled.ENABLED
        and arrays[0].dtype.kind == "f"
        and all(a.flags.c_contiguous and a.shape == arrays[0].shape for a in arrays)
    )


def relu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = max(x, 0); the cache is the mask x > 0 (one compiled pass for both when it can)."""
    if _compiled_relu_takes(x):
        out, positive = np.empty_like(x), np.empty(x.shape, dtype=bool)
        _compiled.relu(x, out, positive)
        return out, positive
    return np.maximum(x, 0), x > 0


def relu_backward(dout: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy * [x > 0] (one compiled pass when it can)."""
    if positive.dtype == bool and _compiled_relu_takes(dout, positive):
        dx = np.empty_like(dout)
        _compiled.relu_backward(dout, positive, dx)
        return dx
    return dout * positive


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> tuple[np.ndarray, tuple]:
    """y = x if x > 0 else negative_slope * x."""
    positive = x > 0
    slope = np.where(positive, 1, negative_slope).astype(x.dtype)
    return x * slope, slope


def leaky_relu_backward(dout: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy * (1 if x > 0 else negative_slope)."""
    return dout * slope


def sigmoid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = 1 / (1 + exp(-x)), evaluated without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return y, y


def sigmoid_backward(dout: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy * y * (1 - y)."""
    return dout * y * (1 - y)


def tanh(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = tanh(x)."""
    y = np.tanh(x)
    return y, y


def tanh_backward(dout: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy * (1 - y^2)."""
    return dout * (1 - y * y)


def log_softmax(x: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """y = x - max(x) - log(sum(exp(x - max(x)))) along ``axis`` (log-sum-exp, stable)."""
    shifted = x - x.max(axis=axis, keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return y, y


def log_softmax_backward(dout: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """dL/dx = dL/dy - softmax(x) * sum(dL/dy) along ``axis``."""
    return dout - np.exp(y) * dout.sum(axis=axis, keepdims=True)


def softmax(x: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """y = exp(x - max(x)) / sum(exp(x - max(x))) along ``axis``."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    return y, y


def softmax_backward(dout: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """dL/dx = y * (dL/dy - sum(dL/dy * y)) along ``axis``."""
    return y * (dout - (dout * y).sum(axis=axis, keepdims=True))
