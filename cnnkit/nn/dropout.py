"""Dropout layers (Srivastava et al., 2014; torch.nn.Dropout and Dropout2d)."""

from __future__ import annotations

import numpy as np

from cnnkit.functional._args import unit_interval
from cnnkit.functional.dropout import dropout, dropout2d, dropout_backward
from cnnkit.nn.module import CachedModule


class Dropout(CachedModule):
    """Zero each element with probability p in training and scale the rest by 1/(1-p).

    Shape: any input shape; the output has the same shape. Identity in eval mode.
    """

    def __init__(
        self, p: float = 0.5, inplace: bool = False, rng: np.random.Generator | None = None
    ):
        super().__init__()
        self.p = unit_interval(p, f"{type(self).__name__} probability p")
        self.inplace = bool(inplace)
        self.rng = np.random.default_rng() if rng is None else rng

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, scale = dropout(x, self.p, self.rng, self.training)
        self._cache = (scale,)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (scale,) = self._take_cache()
        return dropout_backward(dout, scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Zero whole feature maps (channels) with probability p in training, scale the rest by
    1/(1-p) (Tompson et al., 2015; torch.nn.Dropout2d).

    Shape: (N, C, H, W) or (C, H, W) -> the same. Identity in eval mode. ``inplace`` is accepted
    and computes a new array.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim not in (3, 4):
            raise ValueError(f"Dropout2d expected (N, C, H, W) or (C, H, W) input, got {x.shape}")
        out, scale = dropout2d(x, self.p, self.rng, self.training)
        self._cache = (scale,)
        return out
