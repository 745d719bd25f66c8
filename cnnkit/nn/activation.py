"""Activation layers (torch.nn.ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, LogSoftmax).

Shape: any input shape; the output has the same shape.
"""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional import activation as F
from cnnkit.nn.module import CachedModule

FUSED = "applied by the batch norm before"
"""The cache of a ReLU that a batch norm layer computed in its own pass (BatchNorm2d.forward with
``relu``): backward hands dL/dy on and the batch norm's backward applies the mask."""


class ReLU(CachedModule):
    """y = max(x, 0) (Nair & Hinton, 2010)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.relu(x)
        return out

    def fused_into_previous(self) -> None:
        """Record a call whose output the preceding batch norm layer computed (see FUSED)."""
        self._cache = FUSED

    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self._take_cache()
        if isinstance(cache, str) and cache == FUSED:
            return dout
        return F.relu_backward(dout, cache)


class LeakyReLU(CachedModule):
    """y = x if x > 0 else negative_slope * x (Maas et al., 2013)."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
            raise TypeError(f"LeakyReLU negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.leaky_relu(x, self.negative_slope)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.leaky_relu_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(CachedModule):
    """y = 1 / (1 + exp(-x))."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.sigmoid(x)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.sigmoid_backward(dout, self._take_cache())


class Tanh(CachedModule):
    """y = tanh(x)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.tanh(x)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.tanh_backward(dout, self._take_cache())


class Softmax(CachedModule):
    """y = exp(x) / sum(exp(x)) along ``dim`` (computed after subtracting the max)."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.softmax(x, axis=self.dim)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.softmax_backward(dout, self._take_cache(), axis=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """y = x - log(sum(exp(x))) along ``dim`` (log-sum-exp)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.log_softmax(x, axis=self.dim)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.log_softmax_backward(dout, self._take_cache(), axis=self.dim)
