"""Batch normalisation layers (Ioffe & Szegedy, 2015; torch.nn.BatchNorm1d / BatchNorm2d)."""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional import norm as F
from cnnkit.functional._args import unit_interval
from cnnkit.nn.activation import ReLU
from cnnkit.nn.conv import _positive_int
from cnnkit.nn.module import CachedModule, Parameter, check_dtype


def positive_eps(eps, owner: str) -> float:
    """Return ``eps`` as a float if it is a positive number; raise ValueError naming ``owner``."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
        raise ValueError(f"{owner} eps must be a positive number, got {eps!r}")
    return float(eps)


def momentum_or_none(momentum, owner: str) -> float | None:
    """Return ``momentum`` as a float in [0, 1], or None (torch's cumulative average for batch
    norm, no update for instance norm); raise ValueError naming ``owner`` otherwise."""
    return None if momentum is None else unit_interval(momentum, f"{owner} momentum")


def init_channel_norm(
    module: CachedModule,
    num_features,
    eps,
    momentum,
    affine: bool,
    track_running_stats: bool,
    dtype,
    bias: bool,
) -> None:
    """Set what batch and instance norm share (torch's _NormBase): the checked num_features,
    eps, momentum and dtype, weight = 1 and (with ``bias``) bias = 0 per channel when
    ``affine``, and running_mean, running_var and num_batches_tracked buffers when
    ``track_running_stats``."""
    name = type(module).__name__
    module.num_features = _positive_int(num_features, "num_features", name)
    module.eps = positive_eps(eps, name)
    module.momentum = momentum_or_none(momentum, name)
    module.dtype = check_dtype(dtype)
    module.affine, module.track_running_stats = affine, track_running_stats
    shape = (module.num_features,)
    module.weight = Parameter(np.ones(shape, dtype=module.dtype)) if affine else None
    learns_bias = affine and bias
    module.bias = Parameter(np.zeros(shape, dtype=module.dtype)) if learns_bias else None
    if track_running_stats:
        module.register_buffer("running_mean", np.zeros(shape, dtype=module.dtype))
        module.register_buffer("running_var", np.ones(shape, dtype=module.dtype))
        module.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))


EMPTY_BATCH = "empty batch"
"""The cache of a forward pass over no samples: backward returns the (empty) gradient as is."""


class _BatchNorm(CachedModule):
    """Shared by BatchNorm1d and BatchNorm2d: statistics per channel (axis 1).

    ``momentum=None`` keeps the cumulative moving average of the batch statistics (the factor
    is 1 / num_batches_tracked); ``bias=False`` (with ``affine``) learns the scale only. An
    empty batch (any zero-size axis) gives an empty output and leaves the statistics alone, as
    torch does; one value per channel in training is refused, as torch refuses it.
    """

    expected_ndim: tuple[int, ...] = ()
    optional_state = ("num_batches_tracked",)

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype=np.float32,
        *,
        bias: bool = True,
    ):
        super().__init__()
        init_channel_norm(
            self, num_features, eps, momentum, affine, track_running_stats, dtype, bias
        )
        self.allreduce = None  # set by cnnkit.distributed.sync_batch_norm

    def fuses(self, follower) -> bool:
        """Whether forward(x, relu=follower) may fuse: ``follower`` is a ReLU and this layer
        normalises with batch statistics, as in training (containers ask before passing it)."""
        return (
            isinstance(follower, ReLU)
            and self.training
            and self.allreduce is None
            and type(self).forward is _BatchNorm.forward
        )

    def forward(self, x: np.ndarray, relu: ReLU | None = None) -> np.ndarray:
        """bn(x); with ``relu`` (the ReLU layer that follows, from a container that saw the
        pair), relu(bn(x)): one fused compiled pass where F.fuses_relu allows, after which
        ``relu`` keeps a marker and this layer's backward applies its mask; otherwise the
        ReLU layer is simply called on the output."""
        if relu is not None:
            if isinstance(x, np.ndarray) and x.size and F.fuses_relu(x, self.training):
                out = self._forward(x, fused=True)
                relu.fused_into_previous()
                return out
            return relu(self._forward(x))
        return self._forward(x)

    def _forward(self, x: np.ndarray, fused: bool = False) -> np.ndarray:
        self._check_input(x)
        name = type(self).__name__
        if x.ndim not in self.expected_ndim:
            ranks = " or ".join(f"{d}-D" for d in self.expected_ndim)
            raise ValueError(f"{name} expected {ranks} input, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name} expected input with {self.num_features} channels, got {x.shape[1]} "
                f"(input shape {x.shape})"
            )
        use_batch_stats = self.training or not self.track_running_stats
        tracking = self.training and self.track_running_stats
        if tracking:
            self._buffers["num_batches_tracked"] += 1
        if x.size == 0:
            self._cache = EMPTY_BATCH
            return x.copy()
        momentum = self.momentum
        if momentum is None:
            momentum = 1.0 / max(int(self._buffers.get("num_batches_tracked", 1)), 1)
        out, self._cache = F.batch_norm(
            x,
            self._buffers.get("running_mean") if tracking or not use_batch_stats else None,
            self._buffers.get("running_var") if tracking or not use_batch_stats else None,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            training=use_batch_stats,
            momentum=momentum,
            eps=self.eps,
            allreduce=self.allreduce if self.training else None,
            relu=fused,
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self._take_cache()
        if isinstance(cache, str) and cache == EMPTY_BATCH:
            return dout.copy()
        dx, dgamma, dbeta = F.batch_norm_backward(dout, cache)
        if self.weight is not None:
            self.weight.grad += dgamma
        if self.bias is not None:
            self.bias.grad += dbeta
        return dx

    def extra_repr(self) -> str:
        synchronized = ", synchronized" if self.allreduce is not None else ""
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
            f"{synchronized}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) input (torch.nn.BatchNorm1d).

    Shape: (N, C) -> (N, C); (N, C, L) -> (N, C, L).
    """

    expected_ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) input, statistics per channel (torch.nn.BatchNorm2d).

    Shape: (N, C, H, W) -> (N, C, H, W).
    """

    expected_ndim = (4,)
