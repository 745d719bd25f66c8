"""Max and average pooling, forward and backward, with torch's padding, dilation and ceil_mode.

Max and average pooling visit the kH*kW taps of the window as whole-array shifted slices (no Python
loop over windows). Max pooling keeps a running maximum; for the backward pass (or for
``return_indices``) it finds the index of the tap that produced it (as PyTorch's CPU kernel does:
the first maximum in row-major window order wins ties, a NaN always wins, and a window of -inf
picks its first input inside the padding), and routes each gradient to exactly one input with
one masked slice-add per tap. With numba installed, the loops of cnnkit.functional._compiled
find the winners and route the gradients in one pass for undilated windows (2x2 windows at
stride 2, the common case, by a kernel of their own).

``ceil_mode`` follows torch: the output size rounds up, but the last window must start inside
the input or the left padding; the windows that reach past the right padding read -inf (max)
or zeros that the divisor leaves out (average).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from cnnkit.functional import _compiled, reference
from cnnkit.functional._args import (
    Padding2d,
    cache_blocks,
    check_4d,
    pad_hw,
    pair,
    resolve_padding,
    unpad_hw,
    window_slice,
)
from cnnkit.functional._parallel import MIN_PART_BYTES, by_images

WINDOW_KERNEL_MAX_OUTPUTS = 36
"""Other than 2x2 windows at stride 2 without padding (which have a kernel of their own), planes
of at most this many outputs take the compiled max-pool backward window by window; larger ones
take the phase-plane kernel, whose set-up per plane pays off from 7x7 outputs. 3x3 windows at
stride 2, 64x64 planes: 4x4 outputs 5.4 -> 3.8 ms, 6x6 8.2 against 8.5, 7x7 9.9 against 11.7."""


@dataclass
class PoolGeometry:
    """Window geometry of a pooling call, resolved against the input shape.

    ``padding`` is what the kernels pad the input with: the requested padding (``requested``)
    plus, with ceil_mode, the rows and columns that the last windows reach past it.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: Padding2d
    requested: Padding2d
    input_hw: tuple[int, int]
    out_hw: tuple[int, int]

    def taps(self):
        """Yield (u, v, row slice, column slice) for every kernel tap."""
        for u in range(self.kernel[0]):
            rows = window_slice(u * self.dilation[0], self.stride[0], self.out_hw[0])
            for v in range(self.kernel[1]):
                columns = window_slice(v * self.dilation[1], self.stride[1], self.out_hw[1])
                yield u, v, rows, columns

    def window_starts(self, axis: int) -> np.ndarray:
        """Input coordinate of each window's first tap along ``axis`` (0 rows, 1 columns)."""
        return self.stride[axis] * np.arange(self.out_hw[axis]) - self.padding[axis][0]


def pooled_size(size, pad, kernel, stride, dilation, ceil_mode) -> int:
    """torch's pooling_output_shape: floor (or ceil) of (size + pads - d*(k-1) - 1) / s, plus 1;
    with ceil_mode, one fewer when the last window would start past the input and left pad."""
    span = size + pad[0] + pad[1] - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad[0]:
        out -= 1
    return out


def pool_geometry(
    shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, op="max_pool2d"
) -> PoolGeometry:
    """Resolve the window arguments against an (N, C, H, W) ``shape``; raise on bad ones."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"{op} ceil_mode must be a bool, got {ceil_mode!r}")
    hw = (int(shape[2]), int(shape[3]))
    requested = resolve_padding(padding, hw, kernel, stride, dilation)
    if padding != "same" and any(max(requested[i]) > kernel[i] // 2 for i in range(2)):
        raise ValueError(f"{op} padding {padding!r} must be at most half the kernel size {kernel}")
    out_hw = tuple(
        pooled_size(hw[i], requested[i], kernel[i], stride[i], dilation[i], ceil_mode)
        for i in range(2)
    )
    if min(out_hw) < 1:
        reach = tuple(dilation[i] * (kernel[i] - 1) + 1 for i in range(2))
        what = f"kernel {kernel}" if reach == kernel else f"dilated kernel {reach}"
        raise ValueError(
            f"{op} {what} is larger than the padded input "
            f"{(hw[0] + sum(requested[0]), hw[1] + sum(requested[1]))} (input shape {shape})"
        )
    padding = tuple(
        (top, max(bottom, (out - 1) * s + d * (k - 1) + 1 - size - top))
        for (top, bottom), out, s, d, k, size in zip(
            requested, out_hw, stride, dilation, kernel, hw, strict=True
        )
    )
    return PoolGeometry(kernel, stride, dilation, padding, requested, hw, out_hw)


@dataclass
class MaxPool2dCache:
    """The input and the geometry; each window's winning tap is found when backward needs it."""

    source: np.ndarray
    padded_shape: tuple[int, ...]
    geometry: PoolGeometry
    argmax: np.ndarray | None = None


def max_pool2d(
    x: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """y[n,c,i,j] = max over u, v of xpad[n, c, i*s + u*d, j*s + v*d], padded with -inf.

    Returns (out, cache), or ((out, indices), cache) with ``return_indices``: indices[n,c,i,j]
    is the flat position h*W + w in x[n, c] of each maximum (torch.nn.functional.max_pool2d).
    Stride defaults to kernel_size. The forward pass keeps only a running maximum (np.maximum
    propagates NaN, as PyTorch does); which tap won is worked out by :func:`winning_taps` when
    the backward pass or ``return_indices`` asks, so that inference pays for none of it.
    """
    check_4d(x, "max_pool2d")
    geometry = pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    plain = geometry.dilation == (1, 1) and not ceil_mode and not return_indices
    if plain and reference.enabled():
        args = (x, geometry.kernel, geometry.stride, geometry.padding)
        return reference.max_pool2d(*args), reference.Call(reference.max_pool2d_backward, args)
    xp = pad_hw(x, geometry.padding, value=-np.inf)
    out = np.empty(x.shape[:2] + geometry.out_hw, dtype=x.dtype)
    if xp.flags.c_contiguous:  # planes, not images, split between threads: batch 1 too
        planes, pooled = xp.reshape(-1, 1, *xp.shape[2:]), out.reshape(-1, 1, *out.shape[2:])
        by_images(_running_maximum, planes, geometry, pooled, min_part_bytes=MIN_PART_BYTES)
    else:
        by_images(_running_maximum, xp, geometry, out, min_part_bytes=MIN_PART_BYTES)
    cache = MaxPool2dCache(x, xp.shape, geometry)
    if not return_indices:
        return out, cache
    cache.argmax = winning_taps(x, geometry)
    return (out, flat_indices(cache.argmax, geometry)), cache


def _running_maximum(xp: np.ndarray, geometry: PoolGeometry, out: np.ndarray) -> None:
    """out = the maximum of each window of the padded input, tap by tap on cache-sized blocks
    (the images split between threads by the caller: NumPy's maximum releases the GIL)."""
    out[...] = -np.inf
    plane_bytes = geometry.out_hw[0] * geometry.out_hw[1] * xp.itemsize
    for images, channels in cache_blocks(*xp.shape[:2], plane_bytes):
        best, source = out[images, channels], xp[images, channels]
        for _, _, rows, columns in geometry.taps():
            np.maximum(best, source[:, :, rows, columns], out=best)


def winning_taps(x: np.ndarray, geometry: PoolGeometry) -> np.ndarray:
    """Index u * kW + v of the tap that wins each window, by PyTorch's CPU rules (module doc)."""
    xp = pad_hw(x, geometry.padding, value=-np.inf)
    best_so_far = np.full(x.shape[:2] + geometry.out_hw, -np.inf, dtype=x.dtype)
    argmax = np.broadcast_to(_first_inside_tap(geometry), best_so_far.shape).copy()
    has_nan = bool(np.isnan(x).any())
    plane_bytes = geometry.out_hw[0] * geometry.out_hw[1] * x.itemsize
    for images, channels in cache_blocks(*x.shape[:2], plane_bytes):
        best, winner = best_so_far[images, channels], argmax[images, channels]
        source = xp[images, channels]
        better = np.empty(best.shape, dtype=bool)
        for u, v, rows, columns in geometry.taps():
            window = source[:, :, rows, columns]
            np.greater(window, best, out=better)
            if has_nan:
                better |= np.isnan(window)
            np.maximum(best, window, out=best)
            np.copyto(winner, u * geometry.kernel[1] + v, where=better)
    return argmax


def flat_indices(argmax: np.ndarray, geometry: PoolGeometry) -> np.ndarray:
    """torch's max-pool indices: row * W + column in the input plane of each winning tap."""
    u, v = np.divmod(argmax.astype(np.int64), geometry.kernel[1])
    rows = geometry.window_starts(0)[:, None] + u * geometry.dilation[0]
    columns = geometry.window_starts(1)[None, :] + v * geometry.dilation[1]
    return rows * geometry.input_hw[1] + columns


def _first_inside_tap(geometry: PoolGeometry) -> np.ndarray:
    """Tap index of each window's first non-padding input, the winner while nothing beats -inf."""
    u0, v0 = (
        -(np.minimum(geometry.window_starts(axis), 0) // geometry.dilation[axis])
        for axis in range(2)
    )
    return (u0[:, None] * geometry.kernel[1] + v0[None, :]).astype(np.int32)


def max_pool2d_backward(dout: np.ndarray, cache: MaxPool2dCache) -> np.ndarray:
    """dL/dx: each output's gradient goes to the one input that was its maximum."""
    if isinstance(cache, reference.Call):
        return cache.backward(dout)
    geometry = cache.geometry
    if _compiled.ENABLED and geometry.dilation == (1, 1):
        return _compiled_backward(dout, cache)
    if cache.argmax is None:
        cache.argmax = winning_taps(cache.source, geometry)
    dxp = np.zeros(cache.padded_shape, dtype=dout.dtype)
    plane_bytes = dout.shape[2] * dout.shape[3] * dout.itemsize
    for images, channels in cache_blocks(*dout.shape[:2], plane_bytes):
        grad, winner = dout[images, channels], cache.argmax[images, channels]
        target = dxp[images, channels]
        for u, v, rows, columns in geometry.taps():
            target[:, :, rows, columns] += grad * (winner == u * geometry.kernel[1] + v)
    return unpad_hw(dxp, geometry.padding)


def _compiled_backward(dout: np.ndarray, cache: MaxPool2dCache) -> np.ndarray:
    """max_pool2d_backward by the compiled kernel that suits the windows: 2x2 at stride 2 without
    padding, window by window up to WINDOW_KERNEL_MAX_OUTPUTS outputs, else phase planes."""
    geometry = cache.geometry
    # one dtype for both, so that the kernels compare inputs and carry gradients exactly
    common = np.result_type(cache.source, dout)
    x, grads = (np.ascontiguousarray(a, dtype=common) for a in (cache.source, dout))
    cache.argmax = np.empty(dout.shape, dtype=np.int32)
    dx = np.empty(x.shape, dtype=dout.dtype)
    no_padding = geometry.padding == ((0, 0), (0, 0))
    if geometry.kernel == geometry.stride == (2, 2) and no_padding:
        by_images(_compiled.max_pool_backward_2x2, x, grads, cache.argmax, dx)
        return dx
    (top, _), (left, _) = geometry.padding
    small = geometry.out_hw[0] * geometry.out_hw[1] <= WINDOW_KERNEL_MAX_OUTPUTS
    kernel = _compiled.max_pool_backward_by_window if small else _compiled.max_pool_backward
    by_images(
        kernel,
        x,
        grads,
        *geometry.kernel,
        *geometry.stride,
        top,
        left,
        _first_inside_tap(geometry),
        cache.argmax,
        dx,
    )
    return dx


@dataclass
class AvgPool2dCache:
    """Divisor per output and the geometry."""

    divisor: np.ndarray
    padded_shape: tuple[int, ...]
    geometry: PoolGeometry


def avg_pool2d(
    x: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override=None,
) -> tuple[np.ndarray, AvgPool2dCache]:
    """y[n,c,i,j] = sum of the window / divisor (torch.nn.functional.avg_pool2d).

    The divisor is ``divisor_override`` when given; else the window's taps inside the input and
    the padding (count_include_pad, the default) or inside the input only. A window that
    ceil_mode lets reach past the padding counts only what lies inside it, as torch does.
    """
    check_4d(x, "avg_pool2d")
    divisor_override = check_divisor(divisor_override)
    geometry = pool_geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    if not ceil_mode and divisor_override is None and reference.enabled():
        args = (geometry.kernel, geometry.stride, geometry.padding, count_include_pad)
        out = reference.avg_pool2d(x, *args)
        return out, reference.Call(reference.avg_pool2d_backward, (x.shape, *args))
    xp = pad_hw(x, geometry.padding)
    out = np.zeros(x.shape[:2] + geometry.out_hw, dtype=x.dtype)
    for _, _, rows, columns in geometry.taps():
        out += xp[:, :, rows, columns]
    divisor = _divisor(geometry, count_include_pad, divisor_override).astype(x.dtype)
    out /= divisor
    return out, AvgPool2dCache(divisor, xp.shape, geometry)


def check_divisor(divisor_override):
    """Return ``divisor_override`` (None or a nonzero int) as torch accepts it; raise otherwise."""
    if divisor_override is None:
        return None
    if isinstance(divisor_override, bool) or not isinstance(divisor_override, numbers.Integral):
        raise TypeError(f"divisor_override must be an int or None, got {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError("divisor_override must not be zero, got 0")
    return int(divisor_override)


def _divisor(geometry: PoolGeometry, count_include_pad: bool, divisor_override) -> np.ndarray:
    """(1, 1, H_out, W_out) divisors: the product of each window's row and column counts.

    A window from ``start`` counts [start, min(start + k, size + pad_after)) with
    count_include_pad, else [max(start, 0), min(start + k, size)): torch's avg_pool2d rule.
    """
    if divisor_override is not None:
        return np.full((1, 1) + geometry.out_hw, divisor_override)
    counts = []
    for axis in range(2):
        start = geometry.window_starts(axis)
        size, after = geometry.input_hw[axis], geometry.requested[axis][1]
        end = start + geometry.kernel[axis]
        if count_include_pad:
            counts.append(np.minimum(end, size + after) - start)
        else:
            counts.append(np.minimum(end, size) - np.maximum(start, 0))
    return (counts[0][:, None] * counts[1][None, :])[None, None]


def avg_pool2d_backward(dout: np.ndarray, cache: AvgPool2dCache) -> np.ndarray:
    """dL/dx: each output's gradient divided by its divisor and added to its whole window."""
    if isinstance(cache, reference.Call):
        return cache.backward(dout)
    geometry = cache.geometry
    share = dout / cache.divisor
    dxp = np.zeros(cache.padded_shape, dtype=dout.dtype)
    for _, _, rows, columns in geometry.taps():
        dxp[:, :, rows, columns] += share
    return unpad_hw(dxp, geometry.padding)
