"""Normalisation within each sample (torch.nn.GroupNorm, LayerNorm, InstanceNorm1d/2d).

Shape: the output has the input's shape. GroupNorm: (N, C, *); LayerNorm: (*, normalized_shape);
InstanceNorm2d: (N, C, H, W) or unbatched (C, H, W); InstanceNorm1d: (N, C, L) or (C, L).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from cnnkit.functional import sample_norm as F
from cnnkit.nn.conv import _positive_int
from cnnkit.nn.module import CachedModule, Parameter, check_dtype
from cnnkit.nn.norm import init_channel_norm, positive_eps


class _SampleNorm(CachedModule):
    """Scale and shift parameters of ``shape`` (ones and zeros), the backward that adds their
    gradients."""

    def _make_affine(self, shape: tuple[int, ...], weight: bool, bias: bool) -> None:
        self.weight = Parameter(np.ones(shape, dtype=self.dtype)) if weight else None
        self.bias = Parameter(np.zeros(shape, dtype=self.dtype)) if weight and bias else None

    def _parameters_data(self):
        return (
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
        )

    def _accumulate(self, dweight, dbias) -> None:
        if self.weight is not None:
            self.weight.grad += dweight
        if self.bias is not None:
            self.bias.grad += dbias


class GroupNorm(_SampleNorm):
    """Standardise each group of C / G channels of each sample, then gamma[c] x + beta[c]
    (Wu & He, "Group Normalization", 2018)."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        dtype=np.float32,
        *,
        bias: bool = True,
    ):
        super().__init__()
        self.num_groups = _positive_int(num_groups, "num_groups", "GroupNorm")
        self.num_channels = _positive_int(num_channels, "num_channels", "GroupNorm")
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"GroupNorm num_channels={num_channels} must be divisible by "
                f"num_groups={num_groups}"
            )
        self.eps, self.affine = positive_eps(eps, "GroupNorm"), affine
        self.dtype = check_dtype(dtype)
        self._make_affine((self.num_channels,), affine, bias)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"GroupNorm expected input (N, {self.num_channels}, ...), got shape {x.shape}"
            )
        out, self._cache = F.group_norm(x, self.num_groups, *self._parameters_data(), self.eps)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = F.group_norm_backward(dout, self._take_cache())
        self._accumulate(dweight, dbias)
        return dx

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )


class LayerNorm(_SampleNorm):
    """Standardise the last len(normalized_shape) axes of each sample, then gamma x + beta
    elementwise (Ba, Kiros & Hinton, "Layer Normalization", 2016)."""

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype=np.float32,
    ):
        super().__init__()
        shape = (
            (normalized_shape,)
            if isinstance(normalized_shape, numbers.Integral)
            else normalized_shape
        )
        self.normalized_shape = tuple(
            _positive_int(n, "normalized_shape", "LayerNorm") for n in shape
        )
        self.eps, self.dtype = positive_eps(eps, "LayerNorm"), check_dtype(dtype)
        self.elementwise_affine = elementwise_affine
        self._make_affine(self.normalized_shape, elementwise_affine, bias)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        weight, bias = self._parameters_data()
        out, self._cache = F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = F.layer_norm_backward(dout, self._take_cache())
        self._accumulate(dweight, dbias)
        return dx

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )


class _InstanceNorm(_SampleNorm):
    """Standardise each channel of each sample over its spatial axes (Ulyanov et al., 2016).

    ``momentum=None`` leaves the running statistics where they are, as torch (which passes 0).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        dtype=np.float32,
        *,
        bias: bool = True,
    ):
        super().__init__()
        init_channel_norm(
            self, num_features, eps, momentum, affine, track_running_stats, dtype, bias
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        name, rank = type(self).__name__, self.batched_ndim
        if x.ndim != rank:
            raise ValueError(
                f"{name} expected {rank - 1}-D (unbatched) or {rank}-D input, got shape {x.shape}"
            )
        if x.shape[1] != self.num_features:
            mismatch = (
                f"{name} expected input with {self.num_features} channels, got {x.shape[1]} "
                f"(input shape {x.shape})"
            )
            if self.affine or self.track_running_stats:
                raise ValueError(mismatch)
            warnings.warn(  # as torch: num_features is used by nothing else
                f"{mismatch}; num_features is unused with affine=False and "
                "track_running_stats=False",
                stacklevel=2,
            )
        use_input_stats = self.training or not self.track_running_stats
        out, self._cache = F.instance_norm(
            x,
            self._buffers.get("running_mean"),
            self._buffers.get("running_var"),
            *self._parameters_data(),
            use_input_stats=use_input_stats,
            momentum=0.0 if self.momentum is None else self.momentum,
            eps=self.eps,
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = F.instance_norm_backward(dout, self._take_cache())
        self._accumulate(dweight, dbias)
        return dx

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class InstanceNorm1d(_InstanceNorm):
    """Instance norm of (N, C, L) input (torch.nn.InstanceNorm1d)."""

    batched_ndim = 3


class InstanceNorm2d(_InstanceNorm):
    """Instance norm of (N, C, H, W) input (torch.nn.InstanceNorm2d)."""

    batched_ndim = 4
