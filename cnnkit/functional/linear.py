"""Fully connected layer and flatten, forward and backward."""

from __future__ import annotations

import numpy as np

from cnnkit.functional import _parallel, reference
from cnnkit.functional._args import check_float, check_same_dtype


def linear(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> tuple[np.ndarray, tuple]:
    """y = x W^T + b for x (N, in_features), W (out_features, in_features), b (out_features,)."""
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise ValueError(
            f"linear expected 2-D input (N, in_features), got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    check_float(x, "linear", "input")
    check_same_dtype("linear", input=x, weight=weight, bias=bias)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear expected input with {weight.shape[1]} features, got {x.shape[1]} "
            f"(input shape {x.shape})"
        )
    if reference.enabled():
        args = (x, weight, bias is not None)
        return reference.linear(x, weight, bias), reference.Call(_reference_linear_backward, args)
    out = _parallel.matmul(x, weight.T, batch=x.shape[0])
    if bias is not None:
        out += bias
    return out, (x, weight, bias is not None)


def _reference_linear_backward(dout: np.ndarray, x, weight, has_bias: bool) -> tuple:
    dx, dweight, dbias = reference.linear_backward(dout, x, weight)
    return dx, dweight, dbias if has_bias else None


def linear_backward(dout: np.ndarray, cache: tuple) -> tuple:
    """(dL/dx, dL/dW, dL/db) = (dy W, dy^T x, sum_n dy)."""
    if isinstance(cache, reference.Call):
        return cache.backward(dout)
    x, weight, has_bias = cache
    batch = x.shape[0]
    dx = _parallel.matmul(dout, weight, batch=batch)
    dweight = _parallel.matmul(dout.T, x, batch=batch)
    return dx, dweight, dout.sum(axis=0) if has_bias else None


def flatten(x: np.ndarray, start_dim: int = 1) -> tuple[np.ndarray, tuple[int, ...]]:
    """Merge the axes from ``start_dim`` on into one: (N, C, H, W) -> (N, C*H*W)."""
    return x.reshape(x.shape[:start_dim] + (-1,)), x.shape


def flatten_backward(dout: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """dL/dx is dL/dy reshaped back to the input shape."""
    return dout.reshape(input_shape)
