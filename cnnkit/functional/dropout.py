"""Inverted dropout (Srivastava et al., 2014): zero inputs with probability p, scale by 1/(1-p)."""

from __future__ import annotations

import numpy as np

from cnnkit.functional._args import unit_interval


def dropout(
    x: np.ndarray, p: float, rng: np.random.Generator, training: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """y = x * mask / (1 - p) with mask ~ Bernoulli(1 - p) in training; y = x in eval."""
    p = unit_interval(p, "dropout probability p")
    if not training or p == 0:
        return x, None
    if p == 1:
        scale = np.zeros_like(x)
    else:
        keep = rng.random(x.shape, dtype=np.float64) >= p
        scale = keep.astype(x.dtype) * x.dtype.type(1 / (1 - p))
    return x * scale, scale


def dropout_backward(dout: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """dL/dx = dL/dy * mask / (1 - p) (the identity in eval mode)."""
    return dout if scale is None else dout * scale


def dropout2d(
    x: np.ndarray, p: float, rng: np.random.Generator, training: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Channel dropout (Tompson et al., 2015): zero whole (n, c) feature maps with probability
    p and scale the rest by 1/(1-p); x is (N, C, H, W), or (C, H, W) as one sample."""
    p = unit_interval(p, "dropout2d probability p")
    if not training or p == 0:
        return x, None
    planes = x.shape[:-2] + (1, 1)
    if p == 1:
        scale = np.zeros(planes, x.dtype)
    else:
        keep = rng.random(planes, dtype=np.float64) >= p
        scale = keep.astype(x.dtype) * x.dtype.type(1 / (1 - p))
    return x * scale, scale
