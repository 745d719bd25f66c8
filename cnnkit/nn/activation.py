"""Activation layers (torch.nn.ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, LogSoftmax).

Shape: any input shape; the output has the same shape.

``inplace=True`` (ReLU, LeakyReLU, and in cnnkit.nn.modern_activation ReLU6, Hardtanh and
Hardsigmoid) writes the output into the input array, as torch does, and keeps only a mask for
backward. Writing in place overwrites the array that the layer before returned: if that layer
kept it for its own backward (Sigmoid, Tanh and Softmax keep their output), its gradient
silently goes wrong, where torch's version counters raise an error. Use ``inplace=True`` after
Conv2d, Linear or BatchNorm2d, as torchvision does.
"""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional import activation as F
from cnnkit.functional._args import flag
from cnnkit.nn.module import CachedModule

FUSED = "applied by the batch norm before"
"""The cache of a ReLU that a batch norm layer computed in its own pass (BatchNorm2d.forward with
``relu``): backward hands dL/dy on and the batch norm's backward applies the mask."""


class _Elementwise(CachedModule):
    """y = A(x) elementwise by ``function``; backward applies ``derivative`` to the cache.

    ``inplace`` is passed on to ``function`` where it ``writes_in_place`` (its backward needs
    only a mask); elsewhere it is accepted, as torch's, and a new array is returned.
    """

    function = staticmethod(lambda z: (z, None))
    derivative = staticmethod(lambda dout, cache: dout)
    writes_in_place = False

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = flag(inplace, f"{type(self).__name__} inplace")

    def arguments(self) -> dict:
        """The keyword arguments of ``function`` besides the input (and ``inplace``)."""
        return {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        arguments = self.arguments()
        if self.writes_in_place:
            arguments["inplace"] = self.inplace
        out, self._cache = type(self).function(x, **arguments)
        return out

    def fused_into_previous(self) -> None:
        """Record a call whose output the preceding batch norm layer computed (see FUSED)."""
        self._cache = FUSED

    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self._take_cache()
        if isinstance(cache, str) and cache == FUSED:
            return dout
        return type(self).derivative(dout, cache)

    def extra_repr(self) -> str:
        shown = [f"{name}={value!r}" for name, value in self.arguments().items()]
        return ", ".join(shown + (["inplace=True"] if self.inplace else []))


class ReLU(_Elementwise):
    """y = max(x, 0) (Nair & Hinton, 2010); ``inplace=True`` writes y into x."""

    function, derivative = staticmethod(F.relu), staticmethod(F.relu_backward)
    writes_in_place = True


class LeakyReLU(_Elementwise):
    """y = x if x > 0 else negative_slope * x (Maas et al., 2013); ``inplace`` writes into x.

    ``negative_slope`` is read at every call, as torch's.
    """

    function, derivative = staticmethod(F.leaky_relu), staticmethod(F.leaky_relu_backward)
    writes_in_place = True

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__(inplace)
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
            raise TypeError(f"LeakyReLU negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def arguments(self) -> dict:
        return {"negative_slope": self.negative_slope}


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
