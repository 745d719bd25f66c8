"""Elementwise activations and softmax, each forward beside its derivative.

For y = A(z) the backward pass is dL/dz = A'(z) * dL/dy; the cache keeps whichever of z or y
gives A' most cheaply. ``inplace=True`` (relu, leaky_relu: backward needs only a mask) writes
the output into ``x``, as torch does. Branches are selected by exact arithmetic (max/min, a
0/1 mask) rather than by np.where, several times slower on unpredictable masks.
"""

from __future__ import annotations

import numpy as np

from cnnkit.functional import _compiled
from cnnkit.functional._bitmask import BitMask, bits_shape
from cnnkit.functional._parallel import by_images


def _compiled_relu_takes(*arrays: np.ndarray) -> bool:
    """Whether the compiled ReLU loops run: numba on, float data, same-shape C-contiguous arrays
    of at least one axis and one element."""
    return (
        _compiled.ENABLED
        and arrays[0].dtype.kind == "f"
        and arrays[0].ndim >= 1
        and arrays[0].size > 0
        and all(
            isinstance(a, np.ndarray) and a.flags.c_contiguous and a.shape == arrays[0].shape
            for a in arrays
        )
    )


def relu(x: np.ndarray, inplace: bool = False) -> tuple[np.ndarray, BitMask]:
    """y = max(x, 0); the cache is the mask not x <= 0 as bits (NaN included, as torch's
    threshold backward lets its gradient through), both from one compiled pass when it can."""
    if _compiled_relu_takes(x):
        bits = np.empty(bits_shape(x.shape), dtype=np.uint8)
        if inplace:
            by_images(_compiled.relu_in_place, x, bits)
            return x, BitMask(bits, x.shape)
        out = np.empty_like(x)
        by_images(_compiled.relu, x, out, bits)
        return out, BitMask(bits, x.shape)
    positive = ~(x <= 0)
    return np.maximum(x, 0, out=x if inplace else None), BitMask.pack(positive)


_UNSIGNED = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def relu_backward(dout: np.ndarray, positive: BitMask | np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy where the mask is set, else exactly +0 as torch's threshold backward gives
    (also where dL/dy is inf or NaN: no 0 * inf, so no NaN and no warning).

    ``positive`` is relu's BitMask or an array: a bool mask, or another read as true where
    nonzero. One compiled pass when it can; in NumPy a bool mask selects by bits, dL/dy's bit
    pattern AND all ones (set) or all zeros (not set), as fast as a product.
    """
    if isinstance(positive, BitMask):
        if _compiled_relu_takes(dout) and dout.shape == positive.shape:
            dx = np.empty_like(dout)
            by_images(_compiled.relu_backward, dout, positive.bits, dx)
            return dx
        positive = positive.unpack()
    dout = np.asarray(dout)
    if positive.dtype != bool or dout.itemsize not in _UNSIGNED:
        return np.where(positive, dout, dout.dtype.type(0))
    bits = _UNSIGNED[dout.itemsize]
    keep = np.negative(positive.view(np.uint8), dtype=bits)  # 1 -> all ones, 0 -> 0
    return np.bitwise_and(dout.view(bits), keep).view(dout.dtype)


def _pick(mask: np.ndarray, if_false: float, if_true: float, like) -> np.ndarray:
    """``if_true`` where ``mask`` else ``if_false`` in the dtype of ``like``: a table lookup."""
    return np.array([if_false, if_true], dtype=np.result_type(like)).take(mask.view(np.uint8))


def leaky_relu(
    x: np.ndarray, negative_slope: float = 0.01, inplace: bool = False
) -> tuple[np.ndarray, tuple]:
    """y = x if x > 0 else negative_slope * x (Maas et al., 2013).

    Computed as max(x, negative_slope * x), or min for a slope above 1 (NaN-ignoring fmax/fmin,
    so that 0 * inf does not poison x = inf); the mask x > 0 is taken before writing in place.
    """
    positive = x > 0
    larger = np.fmax if negative_slope <= 1 else np.fmin
    return larger(x, x * negative_slope, out=x if inplace else None), (positive, negative_slope)


def leaky_relu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dx = dL/dy * (1 if x > 0 else negative_slope)."""
    positive, negative_slope = cache
    return dout * _pick(positive, negative_slope, 1, dout)


def sigmoid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = 1 / (1 + exp(-x)), as e / (1 + e) with e = exp(-|x|) for x < 0: no overflow.

    The numerator, 1 or e, is max(e, [x >= 0]) since 0 < e <= 1.
    """
    e = np.exp(-np.abs(x))
    y = (np.maximum(e, x >= 0) / (1 + e)).astype(x.dtype, copy=False)
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
