"""Dropout layer (Srivastava et al., 2014; torch.nn.Dropout)."""

from __future__ import annotations

import numpy as np

from cnnkit.functional._args import unit_interval
from cnnkit.functional.dropout import dropout, dropout_backward
from cnnkit.nn.module import CachedModule


class Dropout(CachedModule):
    """Zero each element with probability p in training and scale the rest by 1/(1-p).

    Shape: any input shape; the output has the same shape. Identity in eval mode.
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        super().__init__()
        self.p = unit_interval(p, "Dropout probability p")
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
