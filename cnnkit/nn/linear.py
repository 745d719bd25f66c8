"""Linear (torch.nn.Linear), Flatten (torch.nn.Flatten) and Identity layers."""

from __future__ import annotations

import numpy as np

from cnnkit.functional.linear import flatten, flatten_backward, linear, linear_backward
from cnnkit.nn.conv import _positive_int
from cnnkit.nn.init import torch_default_
from cnnkit.nn.module import CachedModule, Module, Parameter, check_dtype


class Linear(CachedModule):
    """y = x W^T + b (torch.nn.Linear), initialised as PyTorch does.

    Shape:
        (N, in_features) -> (N, out_features), or (in_features,) -> (out_features,) unbatched;
        weight (out_features, in_features).
    """

    batched_ndim = 2

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype=np.float32,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features", "Linear")
        self.out_features = _positive_int(out_features, "out_features", "Linear")
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.weight = Parameter(np.empty((out_features, in_features), dtype=self.dtype))
        self.bias = Parameter(np.empty(out_features, dtype=self.dtype)) if bias else None
        torch_default_(self.weight.data, None if self.bias is None else self.bias.data, rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        bias = None if self.bias is None else self.bias.data
        out, self._cache = linear(x, self.weight.data, bias)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = linear_backward(dout, self._take_cache())
        self.weight.grad += dweight
        if self.bias is not None:
            self.bias.grad += dbias
        return dx

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Flatten(CachedModule):
    """Merge every axis from ``start_dim`` on (torch.nn.Flatten).

    Shape:
        (N, C, H, W) -> (N, C*H*W) with the default start_dim=1.
    """

    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = flatten(x, self.start_dim)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return flatten_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}"


class Identity(Module):
    """y = x (torch.nn.Identity)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout
