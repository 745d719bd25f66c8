"""Padding layers (torch.nn.ZeroPad2d, ConstantPad2d, ReflectionPad2d, ReplicationPad2d,
CircularPad2d): cnnkit.functional.padding.pad2d in one mode each."""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional import padding as F
from cnnkit.nn.module import CachedModule


class _Pad2d(CachedModule):
    """Pads the last two axes of (N, C, H, W) or unbatched (C, H, W) input in ``mode``.

    Shape:
        input (N, C, H, W) -> output (N, C, H + top + bottom, W + left + right), where
        ``padding`` is an int (all four sides) or a 4-tuple (left, right, top, bottom).
    """

    batched_ndim = 4
    mode = "constant"

    def __init__(self, padding) -> None:
        super().__init__()
        self.padding = F.quadruple(padding, type(self).__name__)
        self.value = None

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(..., H + top + bottom, W + left + right) for an input of shape (..., H, W)."""
        left, right, top, bottom = self.padding
        *lead, height, width = input_shape
        return (*lead, height + top + bottom, width + left + right)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim != 4:
            raise ValueError(
                f"{type(self).__name__} expected 3-D (C, H, W) or 4-D (N, C, H, W) input, "
                f"got shape {x.shape}"
            )
        out, self._cache = F.pad2d(x, self.padding, self.mode, self.value)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.pad2d_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ConstantPad2d(_Pad2d):
    """Pads with the constant ``value``; negative padding crops (torch.nn.ConstantPad2d)."""

    def __init__(self, padding, value: float) -> None:
        super().__init__(padding)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"ConstantPad2d value must be a real number, got {value!r}")
        self.value = float(value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ZeroPad2d(ConstantPad2d):
    """Pads with zeros; negative padding crops (torch.nn.ZeroPad2d)."""

    def __init__(self, padding) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ReflectionPad2d(_Pad2d):
    """Pads with the reflection of the input about its edge, x[-t] (torch.nn.ReflectionPad2d).

    Each side must be smaller than the input along its axis.
    """

    mode = "reflect"


class ReplicationPad2d(_Pad2d):
    """Pads by repeating the edge pixels, x[clip(t, 0, n - 1)] (torch.nn.ReplicationPad2d)."""

    mode = "replicate"


class CircularPad2d(_Pad2d):
    """Pads by wrapping the input around, x[t mod n] (torch.nn.CircularPad2d).

    Each side must be at most the input's size along its axis (no second wrap).
    """

    mode = "circular"
