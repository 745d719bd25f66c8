"""Inverted dropout (Srivastava et al., 2014): zero inputs with probability p, scale by 1/(1-p).

``dropout`` draws one mask value per element; ``dropout2d`` one per channel (Tompson et al.,
2015), shared by the whole slice x[n, c]. ``inplace=True`` writes the output into ``x``.
"""

from __future__ import annotations

import warnings

import numpy as np

from cnnkit.functional._args import unit_interval


def _masked(
    x: np.ndarray,
    p: float,
    rng: np.random.Generator,
    training: bool,
    inplace: bool,
    mask_shape: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray | None]:
    """y = x * mask / (1 - p) with mask ~ Bernoulli(1 - p) of ``mask_shape``, broadcast on x."""
    if not training or p == 0:
        return x, None
    if p == 1:
        scale = np.zeros(mask_shape, x.dtype)
    else:
        keep = rng.random(mask_shape, dtype=np.float64) >= p
        scale = keep.astype(x.dtype) * x.dtype.type(1 / (1 - p))
    return np.multiply(x, scale, out=x if inplace else None), scale


def dropout(
    x: np.ndarray,
    p: float,
    rng: np.random.Generator,
    training: bool = True,
    inplace: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """y = x * mask / (1 - p) with mask ~ Bernoulli(1 - p) in training; y = x in eval."""
    p = unit_interval(p, "dropout probability p")
    return _masked(x, p, rng, training, inplace, x.shape)


def dropout_backward(dout: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """dL/dx = dL/dy * mask / (1 - p) (the identity in eval mode); dropout2d's too."""
    return dout if scale is None else dout * scale


def dropout2d(
    x: np.ndarray,
    p: float,
    rng: np.random.Generator,
    training: bool = True,
    inplace: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Channel dropout (Tompson et al., 2015): zero whole slices x[n, c] with probability p and
    scale the rest by 1/(1-p); y = x in eval.

    As torch 2.13's, it reads any input as (N, C, *): a 3-D input is (N, C, L), one mask value
    per (n, c), not an unbatched (C, H, W) image; torch warns so for every input but 4-D, and
    so does this. An input of fewer than 2 dimensions is refused, as torch refuses it.
    """
    p = unit_interval(p, "dropout2d probability p")
    if x.ndim < 2:
        raise ValueError(
            f"dropout2d expected input with at least 2 dimensions (N, C, ...), got shape {x.shape}"
        )
    if x.ndim != 4:
        warnings.warn(
            f"dropout2d received a {x.ndim}-D input of shape {x.shape}: as torch does, it drops "
            "whole slices x[n, c] of dims 0 and 1 (a 3-D input is read as (N, C, L), not as an "
            "unbatched (C, H, W) image)",
            UserWarning,
            stacklevel=2,
        )
    return _masked(x, p, rng, training, inplace, x.shape[:2] + (1,) * (x.ndim - 2))
