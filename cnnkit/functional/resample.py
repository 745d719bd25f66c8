"""Resampling: interpolation (torch.nn.functional.interpolate) and pixel/channel shuffles.

Interpolation is separable: each spatial axis is resampled on its own by a few weighted
gathers ("taps"): one index per output position (nearest) or two indices and two weights
(linear). The backward pass applies the adjoint of each axis in reverse order: every output
gradient is added, times its weight, into the input position it was read from. That adjoint
is itself a set of taps (for each input, the outputs that read it), so both directions are
gathers over whole arrays (``np.take``), never a scatter loop or an unbuffered scatter-add.

Index rules (PyTorch's CPU kernels, ATen ``UpSample.h``), for an axis of ``n`` inputs and
``m`` outputs, with ``scale = 1 / scale_factor`` when a scale factor was given and not
recomputed, ``n / m`` otherwise:

- nearest: ``src = min(floor(dst * scale), n - 1)`` in float32 arithmetic; for 4-D input
  ``src = dst`` when ``m == n`` and ``src = dst // 2`` when ``m == 2n`` whatever the scale.
  (PyTorch's backward takes these two shortcuts for 3-D and 5-D input too, where its forward
  does not, so where they differ its input gradient is not that of its output; ours is.)
- linear, align_corners=False: ``src = max(scale * (dst + 0.5) - 0.5, 0)``; align_corners=True:
  ``src = dst * (n - 1) / (m - 1)`` (0 when m == 1). ``i0 = min(floor(src), n - 1)``,
  ``i1 = min(i0 + 1, n - 1)``, ``y = (1 - l) x[i0] + l x[i1]`` with ``l = clamp(src - i0, 0, 1)``;
  the identity when ``m == n``.

The pixel shuffle (Shi et al., 2016, "Real-Time Single Image and Video Super-Resolution Using
an Efficient Sub-Pixel Convolutional Neural Network") and the channel shuffle (Zhang et al.,
2018, ShuffleNet) only move values: a reshape and a transpose, undone by the inverse
permutation in backward.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from cnnkit.functional._args import check_float

LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3}
"""Each linear interpolation mode and the number of spatial axes it resamples."""
MODES = ("nearest", *LINEAR_MODES)
Taps = tuple[np.ndarray, np.ndarray | None]
"""Along one axis: index (P, T), the T inputs each of the P outputs reads, and their weights
(P, T), or None for weights that are all 1."""


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(value) -> bool:
    return _is_int(value) and value >= 1


def _positive_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0


def _expand(value, dims: int | None) -> tuple:
    """``value`` once per spatial axis: a sequence as given, a scalar repeated ``dims`` times."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * (dims or 1)


def _per_axis(value, name: str, dims: int | None, check, kind: str, op: str) -> None:
    """Raise unless ``value`` passes ``check`` on each of ``dims`` axes (None: any count)."""
    values = _expand(value, dims)
    count = len(values) if dims is None else dims
    if not values or len(values) != count or not all(check(v) for v in values):
        raise ValueError(
            f"{op} {name} must be {kind} or a sequence of them, one per spatial axis"
            f"{'' if dims is None else f' ({dims})'}, got {value!r}"
        )


def check_interpolate_args(
    size,
    scale_factor,
    mode: str,
    align_corners,
    recompute_scale_factor,
    dims: int | None = None,
    op: str = "interpolate",
) -> None:
    """Raise a one-line ValueError/TypeError for arguments torch.nn.functional.interpolate rejects.

    ``dims`` is the number of spatial axes when the input is known (None checks no lengths);
    ``op`` names the caller in the message.
    """
    if mode not in MODES:
        raise ValueError(f"{op} mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(
            f"{op} align_corners only applies to modes linear, bilinear and trilinear, "
            f"got align_corners={align_corners!r} with mode={mode!r}"
        )
    if align_corners is not None and not isinstance(align_corners, bool):
        raise TypeError(f"{op} align_corners must be a bool or None, got {align_corners!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError(
            f"{op} takes exactly one of size and scale_factor, got "
            f"size={size!r} and scale_factor={scale_factor!r}"
        )
    if recompute_scale_factor and size is not None:
        raise ValueError(
            f"{op} recompute_scale_factor=True needs scale_factor, not size (got size={size!r})"
        )
    if size is not None:
        _per_axis(size, "size", dims, _positive_int, "a positive int", op)
    else:
        _per_axis(scale_factor, "scale_factor", dims, _positive_real, "a positive number", op)


def _check_input(x, mode: str) -> int:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"interpolate expected a numpy.ndarray, got {type(x).__name__}")
    check_float(x, "interpolate", "input")
    if not 3 <= x.ndim <= 5:
        raise ValueError(
            f"interpolate expected 3-D, 4-D or 5-D input (N, C, *spatial), got shape {x.shape}"
        )
    dims = x.ndim - 2
    wanted = LINEAR_MODES.get(mode)
    if wanted is not None and wanted != dims:
        raise ValueError(
            f"interpolate mode={mode!r} expects {wanted + 2}-D input, got shape {x.shape}"
        )
    return dims


def _nearest_taps(n: int, m: int, scale: float | None, shortcuts: bool) -> Taps:
    dst = np.arange(m)
    if shortcuts and m in (n, 2 * n):
        return (dst * n // m)[:, None], None
    step = np.float32(1.0 / scale) if scale is not None else np.float32(n) / np.float32(m)
    src = np.minimum(np.floor(dst.astype(np.float32) * step).astype(np.intp), n - 1)
    return src[:, None], None


def _linear_taps(n: int, m: int, scale, align_corners: bool, dtype: np.dtype) -> Taps:
    """Taps (i0, i1) and weights (1 - l, l) along one axis, in the input's precision as PyTorch.

    A float32 source position is rounded once from the exact product, as the fused
    multiply-add of PyTorch's compiled kernel rounds it.
    """
    dst = np.arange(m, dtype=np.float64)
    if align_corners:
        step = dtype.type(n - 1) / dtype.type(m - 1) if m > 1 else dtype.type(0)
        src = (np.float64(step) * dst).astype(dtype)
    else:
        step = dtype.type(1.0 / scale) if scale is not None else dtype.type(n) / dtype.type(m)
        src = np.maximum((np.float64(step) * (dst + 0.5) - 0.5).astype(dtype), 0)
    i0 = np.minimum(np.floor(src.astype(np.float32)).astype(np.intp), n - 1)
    lam = np.clip(src - i0.astype(dtype), 0, 1).astype(dtype)
    return np.stack([i0, i0 + (i0 < n - 1)], axis=1), np.stack([1 - lam, lam], axis=1)


def _transpose(taps: Taps, n: int, dtype: np.dtype) -> Taps:
    """The adjoint taps: for each of the n inputs, the outputs that read it and their weights.

    Input j gets ``sum_t g[index[j, t]] * weight[j, t]`` over the outputs that read it (an
    output reading j through two taps counts once, with the summed weight; zero weights are
    dropped), padded to the largest count with weight 0. Weights are None when all are 1.
    """
    index, weight = taps
    m, count = index.shape
    weights = np.ones(index.size, dtype) if weight is None else weight.ravel()
    keys = index.ravel() * m + np.repeat(np.arange(m), count)
    keys, merged = np.unique(keys[weights != 0], return_inverse=True)
    weights = np.bincount(merged, weights[weights != 0], minlength=keys.size).astype(dtype)
    sources, outputs = np.divmod(keys, m)
    per_input = np.bincount(sources, minlength=n)
    slot = np.arange(keys.size) - np.repeat(np.cumsum(per_input) - per_input, per_input)
    width = max(int(per_input.max()), 1)
    adjoint = np.zeros((n, width), dtype=np.intp)
    adjoint[sources, slot] = outputs
    if weight is None and per_input.min() == width:
        return adjoint, None
    scaled = np.zeros((n, width), dtype=dtype)
    scaled[sources, slot] = weights
    return adjoint, scaled


def _along(vector: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = vector.size
    return vector.reshape(shape)


def _apply_taps(x: np.ndarray, taps: Taps, axis: int) -> np.ndarray:
    """out[.., p, ..] = sum_t x[.., index[p, t], ..] * weight[p, t] along ``axis``."""
    index, weight = taps
    out = None
    for t in range(index.shape[1]):
        term = np.take(x, index[:, t], axis=axis)
        if weight is not None:
            term *= _along(weight[:, t], axis, x.ndim)
        out = term if out is None else np.add(out, term, out=out)
    return out


def _resolve_sizes(shape, size, scale_factor, recompute_scale_factor):
    """Output size of each spatial axis and the scale each kernel uses (None: size ratio)."""
    dims = len(shape) - 2
    if size is not None:
        return tuple(int(s) for s in _expand(size, dims)), (None,) * dims
    factors = _expand(scale_factor, dims)
    sizes = tuple(math.floor(n * float(f)) for n, f in zip(shape[2:], factors, strict=True))
    if min(sizes) < 1:
        raise ValueError(
            f"interpolate scale_factor={scale_factor!r} gives an empty output {sizes} for "
            f"input shape {tuple(shape)}"
        )
    scales = (None,) * dims if recompute_scale_factor else tuple(float(f) for f in factors)
    return sizes, scales


def interpolate(
    x: np.ndarray,
    size=None,
    scale_factor=None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
) -> tuple[np.ndarray, tuple]:
    """Resize the spatial axes of (N, C, *spatial) by nearest or (bi/tri)linear interpolation.

    Same arguments and results as torch.nn.functional.interpolate (modes nearest, linear,
    bilinear, trilinear); the index rules are in the module docstring.
    """
    dims = _check_input(x, mode)
    check_interpolate_args(size, scale_factor, mode, align_corners, recompute_scale_factor, dims)
    sizes, scales = _resolve_sizes(x.shape, size, scale_factor, recompute_scale_factor)
    plans = []
    out = x
    for k, (n, m, scale) in enumerate(zip(x.shape[2:], sizes, scales, strict=True)):
        taps = None
        if mode == "nearest":
            taps = _nearest_taps(n, m, scale, shortcuts=dims == 2)
            if m == n and np.array_equal(taps[0][:, 0], np.arange(n)):
                taps = None
        elif m != n:
            taps = _linear_taps(n, m, scale, bool(align_corners), x.dtype)
        if taps is not None:
            out = _apply_taps(out, taps, 2 + k)
        plans.append(taps)
    return (x.copy() if out is x else out), (x.shape, tuple(plans))


def interpolate_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dx: each output gradient, times its interpolation weight, added into its source."""
    shape, plans = cache
    grad = dout
    for k in reversed(range(len(plans))):
        if plans[k] is not None:
            grad = _apply_taps(grad, _transpose(plans[k], shape[2 + k], dout.dtype), 2 + k)
    return grad.copy() if grad is dout else grad


def check_factor(value, name: str, op: str) -> int:
    """Return ``value`` as an int if it is an integer >= 1; raise naming ``op`` and ``name``."""
    if not _is_int(value):
        raise TypeError(f"{op} {name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{op} {name} must be >= 1, got {value!r}")
    return int(value)


def _check_rank(x, op: str, minimum: int, layout: str) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op} expected a numpy.ndarray, got {type(x).__name__}")
    if x.ndim < minimum:
        raise ValueError(
            f"{op} expected input of at least {minimum} dimensions {layout}, got shape {x.shape}"
        )


def pixel_shuffle(x: np.ndarray, upscale_factor: int) -> tuple[np.ndarray, int]:
    """(*, C r^2, H, W) -> (*, C, H r, W r): y[c, h r + i, w r + j] = x[c r^2 + i r + j, h, w]."""
    r = check_factor(upscale_factor, "upscale_factor", "pixel_shuffle")
    _check_rank(x, "pixel_shuffle", 3, "(*, C, H, W)")
    *batch, c, h, w = x.shape
    if c % (r * r):
        raise ValueError(
            f"pixel_shuffle expected channels divisible by upscale_factor**2 = {r * r}, got "
            f"{c} (input shape {x.shape})"
        )
    k = len(batch)
    out = x.reshape(*batch, c // (r * r), r, r, h, w)
    out = out.transpose(*range(k), k, k + 3, k + 1, k + 4, k + 2)
    return out.reshape(*batch, c // (r * r), h * r, w * r), r


def pixel_shuffle_backward(dout: np.ndarray, r: int) -> np.ndarray:
    """dL/dx = pixel_unshuffle(dL/dy): the inverse permutation."""
    return pixel_unshuffle(dout, r)[0]


def pixel_unshuffle(x: np.ndarray, downscale_factor: int) -> tuple[np.ndarray, int]:
    """(*, C, H r, W r) -> (*, C r^2, H, W), the inverse of pixel_shuffle."""
    r = check_factor(downscale_factor, "downscale_factor", "pixel_unshuffle")
    _check_rank(x, "pixel_unshuffle", 3, "(*, C, H, W)")
    *batch, c, h, w = x.shape
    if h % r or w % r:
        raise ValueError(
            f"pixel_unshuffle expected height and width divisible by downscale_factor {r}, got "
            f"{h} x {w} (input shape {x.shape})"
        )
    k = len(batch)
    out = x.reshape(*batch, c, h // r, r, w // r, r)
    out = out.transpose(*range(k), k, k + 2, k + 4, k + 1, k + 3)
    return out.reshape(*batch, c * r * r, h // r, w // r), r


def pixel_unshuffle_backward(dout: np.ndarray, r: int) -> np.ndarray:
    """dL/dx = pixel_shuffle(dL/dy): the inverse permutation."""
    return pixel_shuffle(dout, r)[0]


def _shuffle(x: np.ndarray, first: int) -> np.ndarray:
    n, c, *rest = x.shape
    out = x.reshape(n, first, c // first, *rest).swapaxes(1, 2)
    return out.reshape(x.shape)


def channel_shuffle(x: np.ndarray, groups: int) -> tuple[np.ndarray, int]:
    """(N, C, *) with C = g k: y[:, j g + i] = x[:, i k + j] (ShuffleNet's group interleave)."""
    g = check_factor(groups, "groups", "channel_shuffle")
    _check_rank(x, "channel_shuffle", 3, "(N, C, *)")
    if x.shape[1] % g:
        raise ValueError(
            f"channel_shuffle expected channels divisible by groups {g}, got {x.shape[1]} "
            f"(input shape {x.shape})"
        )
    return _shuffle(x, g), g


def channel_shuffle_backward(dout: np.ndarray, groups: int) -> np.ndarray:
    """dL/dx: the inverse interleave, a channel shuffle with C / groups groups."""
    return _shuffle(dout, dout.shape[1] // groups)
