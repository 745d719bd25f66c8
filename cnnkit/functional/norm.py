"""Batch normalisation (Ioffe & Szegedy, 2015) forward and backward passes.

Training mode normalises with the batch statistics over every axis but the channel axis 1,
    xhat = (x - mean) / sqrt(var + eps),   y = gamma * xhat + beta,
and updates the running statistics in place as PyTorch does (the running variance takes the
unbiased batch variance):  running = (1 - momentum) * running + momentum * batch_stat.
Eval mode normalises with the running statistics instead.

``allreduce`` (a function summing an array over data-parallel ranks) makes it synchronized batch
norm: the per-channel sums behind the mean, the variance and backward's two sums are taken over
the global batch, so every rank normalises with the statistics of the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cnnkit.functional import _compiled, reference
from cnnkit.functional._args import check_float, check_same_dtype
from cnnkit.functional._parallel import by_images

Allreduce = Callable[[np.ndarray], np.ndarray]


def _summed(allreduce: Allreduce | None, *arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays themselves, or their sums over the ranks (one reduction for all of them)."""
    if allreduce is None:
        return list(arrays)
    total = allreduce(np.concatenate([np.ravel(a) for a in arrays]))
    bounds = np.cumsum([0] + [np.size(a) for a in arrays])
    parts = zip(bounds[:-1], bounds[1:], arrays, strict=True)
    return [total[a:b].reshape(np.shape(v)) for a, b, v in parts]


@dataclass
class BatchNormCache:
    """Normalised input (or the input and mean to recompute it: in eval mode, and in training
    mode with the compiled kernels, which recompute it as they go), inverse standard deviation,
    and whether batch statistics were used."""

    normalized: np.ndarray | None
    inv_std: np.ndarray
    gamma: np.ndarray | None
    training: bool
    count: int = 0
    allreduce: Allreduce | None = None
    x: np.ndarray | None = None
    mean: np.ndarray | None = None
    relu_of: tuple | None = None
    """(gamma, beta) as the fused forward pass used them, when the output was relu(bn(x)):
    backward recomputes the ReLU's mask from x (batch_norm(..., relu=True))."""

    def x_hat(self) -> np.ndarray:
        """xhat = (x - mean) * inv_std: kept from a training forward, recomputed after eval."""
        if self.normalized is None:
            ndim = self.x.ndim
            centred = self.x - _per_channel(self.mean, ndim)
            centred *= _per_channel(self.inv_std, ndim)
            self.normalized = centred
        return self.normalized


def _compiled_kernels_take(x: np.ndarray) -> bool:
    """Whether the compiled loops run: numba available and x laid out (N, C, ...) contiguously."""
    return _compiled.ENABLED and x.flags.c_contiguous


def fuses_relu(x: np.ndarray, training: bool) -> bool:
    """Whether batch_norm(..., relu=True) takes ``x``: training with batch statistics on the
    compiled loops (on the NumPy and reference kernels a ReLU layer follows as usual)."""
    return training and x.ndim == 4 and _compiled_kernels_take(x) and not reference.enabled()


def _by_channel(*arrays: np.ndarray) -> list[np.ndarray]:
    """(N, C, ...) arrays as (N, C, M), (C,) arrays as they are: what the compiled loops take."""
    return [a if a.ndim == 1 else a.reshape(a.shape[0], a.shape[1], -1) for a in arrays]


def _channel_square_sums(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    sums = np.empty(x.shape[1])
    by_images(_compiled.channel_square_sums, *_by_channel(x, mean.astype(x.dtype)), totals=[sums])
    return sums.astype(x.dtype)


def _reduce_axes(x: np.ndarray) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm(
    x: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    allreduce: Allreduce | None = None,
    relu: bool = False,
) -> tuple[np.ndarray, BatchNormCache]:
    """Batch norm of x (N, C) or (N, C, H, W) over all axes but channel axis 1.

    ``relu=True`` (only where :func:`fuses_relu`) returns relu(batch_norm(x)) from one compiled
    pass, bit for bit what the two layers compute; backward then takes dL/d(relu output) and
    applies the ReLU's mask, recomputed from x, inside its own two passes.
    """
    if relu and not fuses_relu(x, training):
        raise ValueError("batch_norm relu=True needs training mode on the compiled kernels")
    if not isinstance(x, np.ndarray) or x.ndim not in (2, 3, 4):
        raise ValueError(
            f"batch_norm expected input of shape (N, C), (N, C, L) or (N, C, H, W), "
            f"got {getattr(x, 'shape', type(x).__name__)}"
        )
    check_float(x, "batch_norm", "input")
    check_same_dtype("batch_norm", input=x, gamma=gamma, beta=beta)
    channels = x.shape[1]
    for name, v in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("gamma", gamma),
        ("beta", beta),
    ):
        if v is not None and v.shape != (channels,):
            raise ValueError(
                f"batch_norm expected {name} of shape ({channels},) for input {x.shape}, "
                f"got {v.shape}"
            )
    if training and allreduce is None and x.ndim == 4 and reference.enabled():
        return _reference_batch_norm(x, running_mean, running_var, gamma, beta, momentum, eps)
    axes = _reduce_axes(x)
    compiled = _compiled_kernels_take(x)
    count = 0
    if training:
        local_count = np.array([x.size // channels], dtype=x.dtype)
        sums, (count,) = _summed(allreduce, x.sum(axis=axes), local_count)
        count = int(count)
        if count == 1:
            raise ValueError(
                f"batch_norm in training mode needs more than 1 value per channel, "
                f"got input shape {x.shape}"
            )
        if count == 0:
            return _empty_batch(x, gamma)
        mean = sums / x.dtype.type(count)
        if compiled:
            local_squares = _channel_square_sums(x, mean)
        else:
            centred = x - _per_channel(mean, x.ndim)
            local_squares = np.square(centred).sum(axis=axes)
        (squares,) = _summed(allreduce, local_squares)
        var = squares / x.dtype.type(count)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * (count / (count - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in eval mode needs running_mean and running_var")
        mean, var = running_mean, running_var
    inv_std = _inv_std(var, eps, x.dtype)
    if not training:
        return _normalize_with_running_stats(x, mean, inv_std, gamma, beta)
    if compiled:
        out, mean = np.empty_like(x), mean.astype(x.dtype)
        ones, zeros = np.ones_like(inv_std), np.zeros_like(inv_std)
        affine = (ones if gamma is None else gamma, zeros if beta is None else beta)
        kernel = _compiled.batch_norm_relu_forward if relu else _compiled.batch_norm_forward
        by_images(kernel, *_by_channel(x, mean, inv_std), *affine, *_by_channel(out))
        cache = BatchNormCache(None, inv_std, gamma, training, count, allreduce, x=x, mean=mean)
        cache.relu_of = affine if relu else None
        return out, cache
    x_hat = centred
    x_hat *= _per_channel(inv_std, x.ndim)
    if gamma is None:
        out = x_hat if beta is None else x_hat + _per_channel(beta, x.ndim)
    else:
        out = x_hat * _per_channel(gamma, x.ndim)
        if beta is not None:
            out += _per_channel(beta, x.ndim)
    return out, BatchNormCache(x_hat, inv_std, gamma, training, count, allreduce)


def _reference_batch_norm(x, running_mean, running_var, gamma, beta, momentum, eps):
    """Training-mode batch norm of images on the loops of ``reference``; the running statistics
    move as on the fast path (the unbiased variance, m / (m - 1) times the batch's)."""
    ones = np.ones(x.shape[1], x.dtype)
    gamma_or_one = ones if gamma is None else gamma
    out, (mean, var) = reference.batch_norm(
        x, gamma_or_one, ones * 0 if beta is None else beta, eps
    )
    count = x.size // x.shape[1]
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean
    if running_var is not None:
        running_var *= 1 - momentum
        running_var += momentum * var * (count / (count - 1))
    return out, reference.Call(reference.batch_norm_backward, (x, gamma_or_one, eps))


def _empty_batch(x: np.ndarray, gamma: np.ndarray | None) -> tuple[np.ndarray, BatchNormCache]:
    """No values per channel (a zero-size axis), as torch: an empty output, the running
    statistics untouched, and a backward pass with nothing to normalise (an empty dL/dx, zero
    parameter gradients)."""
    inv_std = np.ones(x.shape[1], dtype=x.dtype)
    return np.empty_like(x), BatchNormCache(np.empty_like(x), inv_std, gamma, False)


def _normalize_with_running_stats(x, mean, inv_std, gamma, beta):
    """Eval mode as one affine map per channel, y = x * scale + shift (:func:`_affine`)."""
    out = _affine(x, *_eval_affine(mean, inv_std, gamma, beta, x.dtype), relu=False)
    cache = BatchNormCache(None, inv_std, gamma, False, x=x, mean=mean.copy())
    return out, cache


def _inv_std(var: np.ndarray, eps: float, dtype) -> np.ndarray:
    """1 / sqrt(var + eps) in ``dtype``: the one rounding both eval paths must share."""
    return (1 / np.sqrt(var + eps)).astype(dtype, copy=False)


def _eval_affine(mean, inv_std, gamma, beta, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) = (gamma * inv_std, beta - mean * scale) per channel, in ``dtype``."""
    scale = inv_std if gamma is None else gamma * inv_std
    shift = -mean * scale if beta is None else beta - mean * scale
    return scale.astype(dtype, copy=False), shift.astype(dtype, copy=False)


def _affine(x, scale, shift, relu: bool, out=None) -> np.ndarray:
    """[relu](x * scale + shift) per channel into ``out`` (a new array when None; x itself is
    allowed): one compiled pass where the compiled kernels take x, else NumPy's passes, the
    same roundings either way."""
    if out is None:
        out = np.empty_like(x)
    if _compiled_kernels_take(x) and x.size and out.flags.c_contiguous:
        arrays = _by_channel(x, scale, shift)
        if out is x:
            by_images(_compiled.scale_shift_in_place, *arrays, relu)
        else:
            by_images(_compiled.scale_shift, *arrays, relu, *_by_channel(out))
        return out
    np.multiply(x, _per_channel(scale, x.ndim), out=out)
    out += _per_channel(shift, x.ndim)
    if relu:
        np.maximum(out, 0, out=out)
    return out


def batch_norm_inference_(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    eps: float = 1e-5,
    relu: bool = False,
) -> np.ndarray:
    """Eval-mode batch norm written into ``x`` (then ReLU where ``relu``): bit for bit what
    batch_norm(x, ..., training=False) and relu give, in one pass and no new array; for an x
    that nothing else reads (cnnkit.nn.fusion: a convolution's own output under no_grad)."""
    inv_std = _inv_std(running_var, eps, x.dtype)
    return _affine(x, *_eval_affine(running_mean, inv_std, gamma, beta, x.dtype), relu, out=x)


def batch_norm_backward(
    dout: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dL/dx, dL/dgamma, dL/dbeta).

    Training: dx = gamma * inv_std / m * (m * dy - sum(dy) - xhat * sum(dy * xhat)), m = N*H*W.
    Eval: dx = gamma * inv_std * dy (the running statistics are constants).
    Synchronized: the two sums and m are over the global batch; dgamma and dbeta stay this
    rank's share, to be summed with the other parameter gradients.
    """
    if isinstance(cache, reference.Call):
        return cache.backward(dout)
    scale = cache.inv_std if cache.gamma is None else cache.gamma * cache.inv_std
    compiled = cache.training and cache.normalized is None and _compiled_kernels_take(dout)
    if cache.relu_of is not None:
        return _fused_relu_backward(np.ascontiguousarray(dout), cache)
    if compiled:
        normalizing = _by_channel(cache.x, cache.mean, cache.inv_std)
        dbeta, dgamma = _compiled_gradient_sums(dout, normalizing)
    else:
        x_hat = cache.x_hat()
        axes = _reduce_axes(dout)
        dbeta, dgamma = dout.sum(axis=axes), (dout * x_hat).sum(axis=axes)
    if not cache.training:
        return dout * _per_channel(scale, dout.ndim), dgamma, dbeta
    sum_dy, sum_dy_xhat = _summed(cache.allreduce, dbeta, dgamma)
    count = dout.dtype.type(cache.count)
    mean_dy, mean_dy_xhat = sum_dy / count, sum_dy_xhat / count
    if compiled:
        dx = np.empty_like(dout)
        by_images(
            _compiled.batch_norm_input_gradient,
            _by_channel(dout)[0],
            *normalizing,
            *_by_channel(mean_dy, mean_dy_xhat, scale, dx),
        )
    else:
        ndim = dout.ndim
        dx = dout - _per_channel(mean_dy, ndim)
        dx -= x_hat * _per_channel(mean_dy_xhat, ndim)
        dx *= _per_channel(scale, ndim)
    return dx, dgamma, dbeta


def _fused_relu_backward(dout: np.ndarray, cache: BatchNormCache) -> tuple:
    """batch_norm_backward of dL/dy = dout * [y > 0] for y = batch_norm(x), the output of
    batch_norm(..., relu=True): the same formulas, the mask recomputed from x in both passes."""
    scale = cache.inv_std if cache.gamma is None else cache.gamma * cache.inv_std
    normalizing = (*_by_channel(cache.x, cache.mean, cache.inv_std), *cache.relu_of)
    sums = np.empty(dout.shape[1]), np.empty(dout.shape[1])
    by_images(_compiled.batch_norm_relu_sums, *_by_channel(dout), *normalizing, totals=sums)
    dbeta, dgamma = (s.astype(dout.dtype) for s in sums)
    sum_dy, sum_dy_xhat = _summed(cache.allreduce, dbeta, dgamma)
    count = dout.dtype.type(cache.count)
    mean_dy, mean_dy_xhat = sum_dy / count, sum_dy_xhat / count
    dx = np.empty_like(dout)
    by_images(
        _compiled.batch_norm_relu_input_gradient,
        _by_channel(dout)[0],
        *normalizing,
        *_by_channel(mean_dy, mean_dy_xhat, scale, dx),
    )
    return dx, dgamma, dbeta


def _compiled_gradient_sums(dout: np.ndarray, normalizing: list) -> tuple[np.ndarray, np.ndarray]:
    """(sum dy, sum dy * xhat) per channel in one compiled pass, accumulated in float64, xhat
    recomputed from ``normalizing`` = (x, mean, inv_std) as the forward pass computed it."""
    sum_dy, sum_dy_xhat = np.empty(dout.shape[1]), np.empty(dout.shape[1])
    totals = (sum_dy, sum_dy_xhat)
    by_images(_compiled.batch_norm_sums, *_by_channel(dout), *normalizing, totals=totals)
    return sum_dy.astype(dout.dtype), sum_dy_xhat.astype(dout.dtype)
