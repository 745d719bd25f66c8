"""Normalisations within each sample: group norm, layer norm, instance norm, forward and backward.

Each standardises groups of m values, xhat = (x - mean) / sqrt(var + eps) (biased variance),
then scales and shifts by learned parameters. The backward pass through the standardisation is
batch norm's, applied to each group: dx = inv_std * (g - mean(g) - xhat * mean(g * xhat)) with
g = dL/dxhat. Wu & He (2018) for group norm, Ba et al. (2016) for layer norm, Ulyanov et al.
(2016) for instance norm.

The row sums of products (the variance, backward's sum of g * xhat, dL/dgamma) are einsum dot
products over (rows, m) and (A, P, B) views, without the temporary of the product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cnnkit.functional._args import check_float, check_same_dtype


@dataclass
class SampleNormCache:
    """The standardised input as rows of one group each, 1/std per row, and the affine shape."""

    x_hat: np.ndarray
    inv_std: np.ndarray
    weight: np.ndarray | None
    affine_shape: tuple[int, ...]
    has_bias: bool
    parameter_ndim: int

    @property
    def affine_axes(self) -> tuple[int, ...]:
        """The axes a parameter gradient sums over: all but the parameters' own axes (channel
        axis 1 for group and instance norm, the trailing axes for layer norm)."""
        ndim = len(self.affine_shape)
        own = range(1, 2) if self.parameter_ndim == 0 else range(ndim - self.parameter_ndim, ndim)
        return tuple(i for i in range(ndim) if i not in own)

    def parameter_view(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``shape`` as (A, P, B) with the parameters along P: (N, C, positions) for a
        parameter per channel, (samples, prod(normalized_shape), 1) for layer norm's."""
        if self.parameter_ndim == 0:
            return shape[0], shape[1], math.prod(shape[2:])
        lead = len(shape) - self.parameter_ndim
        return math.prod(shape[:lead]), math.prod(shape[lead:]), 1

    def parameter_gradients(self, dout: np.ndarray):
        """(dL/dgamma or None, dL/dbeta or None), each of the parameters' own shape."""
        shape = [self.affine_shape[i] for i in range(dout.ndim) if i not in self.affine_axes]
        view = self.parameter_view(dout.shape)
        by_parameter = dout.reshape(view)
        dweight = None
        if self.weight is not None:
            dweight = np.einsum("apb,apb->p", by_parameter, self.x_hat.reshape(view))
            dweight = dweight.reshape(self.weight.shape)
        dbias = by_parameter.sum(axis=(0, 2)).reshape(shape) if self.has_bias else None
        return dweight, dbias


def _standardize(rows: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xhat, 1 / sqrt(var + eps), var) of each row of ``rows`` (..., m), var biased."""
    count = rows.dtype.type(max(rows.shape[-1], 1))
    centred = rows - rows.sum(axis=-1, keepdims=True) / count
    var = np.einsum("...i,...i->...", centred, centred)[..., None] / count
    inv_std = 1 / np.sqrt(var + rows.dtype.type(eps))
    centred *= inv_std
    return centred, inv_std, var


def _standardize_backward(d_rows: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray):
    """inv_std * (g - mean(g) - xhat * mean(g * xhat)) for each row of g = ``d_rows``."""
    count = d_rows.dtype.type(max(d_rows.shape[-1], 1))
    dx = d_rows - d_rows.sum(axis=-1, keepdims=True) / count
    dx -= x_hat * (np.einsum("...i,...i->...", d_rows, x_hat)[..., None] / count)
    dx *= inv_std
    return dx


def _affine(x_hat: np.ndarray, weight, bias, affine_shape) -> np.ndarray:
    out = x_hat if weight is None else x_hat * weight.reshape(affine_shape)
    return out if bias is None else out + bias.reshape(affine_shape)


def _check(x, op: str, weight, bias) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op} expected a numpy.ndarray, got {type(x).__name__}")
    check_float(x, op, "input")
    check_same_dtype(op, input=x, weight=weight, bias=bias)


def _check_parameters(x, op: str, shape: tuple[int, ...], **arrays) -> None:
    """Each array given (weight, bias, running statistics) has ``shape``, or is None."""
    for name, v in arrays.items():
        if v is not None and v.shape != shape:
            raise ValueError(
                f"{op} expected {name} of shape {shape} for input {x.shape}, got {v.shape}"
            )


def _normalized_rows(x, rows_shape, weight, bias, eps, affine_shape, parameter_ndim=0):
    x_hat, inv_std, var = _standardize(x.reshape(rows_shape), eps)
    x_hat = x_hat.reshape(x.shape)
    out = _affine(x_hat, weight, bias, affine_shape).astype(x.dtype, copy=False)
    cache = SampleNormCache(x_hat, inv_std, weight, affine_shape, bias is not None, parameter_ndim)
    return out, cache, var


def sample_norm_backward(dout: np.ndarray, cache: SampleNormCache, rows_shape: tuple[int, ...]):
    """(dL/dx, dL/dweight or None, dL/dbias or None) for group, layer and instance norm."""
    dweight, dbias = cache.parameter_gradients(dout)
    d_xhat = dout if cache.weight is None else dout * cache.weight.reshape(cache.affine_shape)
    rows = _standardize_backward(
        d_xhat.reshape(rows_shape), cache.x_hat.reshape(rows_shape), cache.inv_std
    )
    return rows.reshape(dout.shape).astype(dout.dtype, copy=False), dweight, dbias


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    """y = gamma[c] * xhat + beta[c], xhat standardised over each group of C / G channels of
    each sample (Wu & He, 2018). x is (N, C, *)."""
    _check(x, "group_norm", weight, bias)
    if x.ndim < 2 or x.shape[1] % num_groups:
        raise ValueError(
            f"group_norm expected input (N, C, ...) with C divisible by num_groups={num_groups}, "
            f"got shape {x.shape}"
        )
    if x.size == num_groups:
        raise ValueError(
            f"group_norm expected more than 1 value per group or more than 1 sample (as torch), "
            f"got input shape {x.shape} with {num_groups} groups"
        )
    _check_parameters(x, "group_norm", (x.shape[1],), weight=weight, bias=bias)
    rows_shape = (x.shape[0], num_groups, x[0].size // num_groups if x.shape[0] else 0)
    affine_shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    out, cache, _ = _normalized_rows(x, rows_shape, weight, bias, eps, affine_shape)
    return out, (cache, rows_shape)


def group_norm_backward(dout: np.ndarray, cache: tuple):
    """(dL/dx, dL/dgamma, dL/dbeta) of group_norm."""
    norm_cache, rows_shape = cache
    return sample_norm_backward(dout, norm_cache, rows_shape)


def layer_norm(x, normalized_shape: tuple[int, ...], weight=None, bias=None, eps: float = 1e-5):
    """y = gamma * xhat + beta, xhat standardised over the last len(normalized_shape) axes
    (Ba, Kiros & Hinton, 2016); gamma and beta have shape normalized_shape."""
    _check(x, "layer_norm", weight, bias)
    k = len(normalized_shape)
    if x.ndim < k or tuple(x.shape[x.ndim - k :]) != tuple(normalized_shape):
        raise ValueError(
            f"layer_norm expected input whose last dimensions are {tuple(normalized_shape)}, "
            f"got shape {x.shape}"
        )
    _check_parameters(x, "layer_norm", tuple(normalized_shape), weight=weight, bias=bias)
    rows_shape = (*x.shape[: x.ndim - k], int(np.prod(normalized_shape)))
    affine_shape = (1,) * (x.ndim - k) + tuple(normalized_shape)
    out, cache, _ = _normalized_rows(x, rows_shape, weight, bias, eps, affine_shape, k)
    return out, (cache, rows_shape)


layer_norm_backward = group_norm_backward


def instance_norm(
    x,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
):
    """y = gamma[c] * xhat + beta[c], xhat standardised over the spatial axes of each (n, c)
    (Ulyanov, Vedaldi & Lempitsky, 2016). With running statistics and ``use_input_stats``, they
    move by ``momentum`` towards the batch's mean of the instance means and variances (the
    variance unbiased); without ``use_input_stats`` they normalise instead."""
    _check(x, "instance_norm", weight, bias)
    if x.ndim < 3:
        raise ValueError(
            f"instance_norm expected input (N, C, ...) of 3 or more dims, got shape {x.shape}"
        )
    channels = x.shape[1]
    _check_parameters(
        x, "instance_norm", (channels,), weight=weight, bias=bias,
        running_mean=running_mean, running_var=running_var,
    )  # fmt: skip
    if not use_input_stats and (running_mean is None or running_var is None):
        raise ValueError(
            "instance_norm without input statistics needs running_mean and running_var"
        )
    affine_shape = (1, channels) + (1,) * (x.ndim - 2)
    rows_shape = (x.shape[0], channels, int(np.prod(x.shape[2:])))
    if not use_input_stats:
        inv_std = 1 / np.sqrt(running_var + eps)
        x_hat = (x - running_mean.reshape(affine_shape)) * inv_std.reshape(affine_shape)
        out = _affine(x_hat, weight, bias, affine_shape).astype(x.dtype, copy=False)
        cache = SampleNormCache(x_hat, inv_std, weight, affine_shape, bias is not None, 0)
        return out, (cache, None)
    m = rows_shape[2]
    if m == 1:
        raise ValueError(
            f"instance_norm with input statistics needs more than 1 spatial value per channel "
            f"(as torch), got input shape {x.shape}"
        )
    out, cache, var = _normalized_rows(x, rows_shape, weight, bias, eps, affine_shape)
    if running_mean is not None:
        with np.errstate(invalid="ignore"):  # an empty batch averages nothing: NaN, as torch
            mean = x.reshape(rows_shape).mean(axis=(0, 2))
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * var[..., 0].mean(axis=0) * (m / max(m - 1, 1))
    return out, (cache, rows_shape)


def instance_norm_backward(dout: np.ndarray, cache: tuple):
    """(dL/dx, dL/dgamma, dL/dbeta) of instance_norm; with running statistics (eval) the
    standardisation is a fixed affine map and dx = gamma * inv_std * dy."""
    norm_cache, rows_shape = cache
    if rows_shape is None:
        scale = norm_cache.inv_std.reshape(norm_cache.affine_shape)
        if norm_cache.weight is not None:
            scale = scale * norm_cache.weight.reshape(norm_cache.affine_shape)
        dweight, dbias = norm_cache.parameter_gradients(dout)
        return (dout * scale).astype(dout.dtype, copy=False), dweight, dbias
    return sample_norm_backward(dout, norm_cache, rows_shape)
