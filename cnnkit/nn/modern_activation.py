"""Activation layers of modern CNNs (torch.nn.ReLU6, Hardtanh, Hardsigmoid, Hardswish, SiLU,
GELU, ELU, Softplus, Mish, PReLU).

Shape: any input shape; the output has the same shape. ``inplace=True`` is accepted wherever
torch has it: ReLU6, Hardtanh and Hardsigmoid then write their output into the input array, as
torch does, and keep only a mask for backward (see cnnkit.nn.activation on when that is safe);
Hardswish, SiLU, ELU and Mish differentiate through x itself, so they keep x and return a new
array whatever ``inplace`` says.
"""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional import modern_activation as F
from cnnkit.nn.activation import _Elementwise
from cnnkit.nn.module import CachedModule, Parameter, check_dtype


def _number(value, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"{owner} {name} must be a finite number, got {value!r}")
    return float(value)


class Hardtanh(_Elementwise):
    """y = min(max(x, min_val), max_val) (torch.nn.Hardtanh)."""

    function, derivative = staticmethod(F.hardtanh), staticmethod(F.hardtanh_backward)
    writes_in_place = True

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.min_val = _number(min_val, "min_val", "Hardtanh")
        self.max_val = _number(max_val, "max_val", "Hardtanh")
        if self.max_val <= self.min_val:
            raise ValueError(
                f"Hardtanh max_val must be greater than min_val, got min_val={min_val!r}, "
                f"max_val={max_val!r}"
            )

    def arguments(self) -> dict:
        return {"min_val": self.min_val, "max_val": self.max_val}


class ReLU6(_Elementwise):
    """y = min(max(x, 0), 6) (Howard et al., MobileNets, 2017)."""

    function, derivative = staticmethod(F.relu6), staticmethod(F.relu6_backward)
    writes_in_place = True


class Hardsigmoid(_Elementwise):
    """y = relu6(x + 3) / 6 (Howard et al., Searching for MobileNetV3, 2019)."""

    function, derivative = staticmethod(F.hardsigmoid), staticmethod(F.hardsigmoid_backward)
    writes_in_place = True


class Hardswish(_Elementwise):
    """y = x relu6(x + 3) / 6 (Howard et al., Searching for MobileNetV3, 2019)."""

    function, derivative = staticmethod(F.hardswish), staticmethod(F.hardswish_backward)


class SiLU(_Elementwise):
    """y = x sigmoid(x), also called Swish (Elfwing et al., 2018)."""

    function, derivative = staticmethod(F.silu), staticmethod(F.silu_backward)


class Mish(_Elementwise):
    """y = x tanh(softplus(x)) (Misra, 2019)."""

    function, derivative = staticmethod(F.mish), staticmethod(F.mish_backward)


class GELU(_Elementwise):
    """y = x Phi(x), or its tanh approximation (Hendrycks & Gimpel, 2016)."""

    function, derivative = staticmethod(F.gelu), staticmethod(F.gelu_backward)

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = F.check_gelu_approximate(approximate, "GELU")

    def arguments(self) -> dict:
        return {"approximate": self.approximate}


class ELU(_Elementwise):
    """y = x if x > 0 else alpha (exp(x) - 1) (Clevert et al., 2016)."""

    function, derivative = staticmethod(F.elu), staticmethod(F.elu_backward)

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.alpha = _number(alpha, "alpha", "ELU")

    def arguments(self) -> dict:
        return {"alpha": self.alpha}


class Softplus(_Elementwise):
    """y = log(1 + exp(beta x)) / beta, linear where beta x > threshold (torch.nn.Softplus)."""

    function, derivative = staticmethod(F.softplus), staticmethod(F.softplus_backward)

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = _number(beta, "beta", "Softplus")
        self.threshold = _number(threshold, "threshold", "Softplus")
        if self.beta == 0:
            raise ValueError("Softplus beta must be non-zero, got 0")

    def arguments(self) -> dict:
        return {"beta": self.beta, "threshold": self.threshold}


class PReLU(CachedModule):
    """y = x if x > 0 else a x, with a learned slope a per channel (axis 1) or one shared
    (He et al., "Delving Deep into Rectifiers", 2015)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, dtype=np.float32):
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, numbers.Integral):
            raise TypeError(f"PReLU num_parameters must be an int, got {num_parameters!r}")
        if num_parameters < 1:
            raise ValueError(f"PReLU num_parameters must be at least 1, got {num_parameters}")
        self.num_parameters = int(num_parameters)
        self.dtype = check_dtype(dtype)
        value = _number(init, "init", "PReLU")
        self.weight = Parameter(np.full(self.num_parameters, value, dtype=self.dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.prelu(x, self.weight.data)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight = F.prelu_backward(dout, self._take_cache())
        self.weight.grad += dweight
        return dx

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"
