"""Pooling forward and backward passes: max, average, adaptive average and global average.

Max and average pooling visit the kH*kW taps of the window as whole-array shifted slices (no Python
loop over windows). Max pooling keeps a running maximum; for the backward pass it finds the index
of the tap that produced it (as PyTorch's CPU kernel does: the first maximum in row-major window
order wins ties, a NaN always wins, and a window of -inf picks its first input inside the
padding), and routes each gradient to exactly one input with one masked slice-add per tap. With
numba installed, the loops of cnnkit.functional._compiled find the winners and route the
gradients in one pass (2x2 windows at stride 2, the common case, by a kernel of their own).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnkit.functional import _compiled, reference
from cnnkit.functional._args import (
    Padding2d,
    cache_blocks,
    check_4d,
    output_size,
    pad_hw,
    pair,
    resolve_padding,
    unpad_hw,
    window_slice,
)

WINDOW_KERNEL_MAX_OUTPUTS = 36
"""Other than 2x2 windows at stride 2 without padding (which have a kernel of their own), planes
of at most this many outputs take the compiled max-pool backward window by window; larger ones
take the phase-plane kernel, whose set-up per plane pays off from 7x7 outputs. 3x3 windows at
stride 2, 64x64 planes: 4x4 outputs 5.4 -> 3.8 ms, 6x6 8.2 against 8.5, 7x7 9.9 against 11.7."""


@dataclass
class PoolGeometry:
    """Window geometry of a pooling call, resolved against the input shape."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding2d
    out_hw: tuple[int, int]

    def taps(self):
        """Yield (u, v, row slice, column slice) for every kernel tap."""
        for u in range(self.kernel[0]):
            rows = window_slice(u, self.stride[0], self.out_hw[0])
            for v in range(self.kernel[1]):
                yield u, v, rows, window_slice(v, self.stride[1], self.out_hw[1])


def _geometry(x, kernel_size, stride, padding, op) -> PoolGeometry:
    check_4d(x, op)
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    pad = resolve_padding(padding, x.shape[2:], kernel, stride, (1, 1))
    if padding != "same" and any(max(pad[i]) > kernel[i] // 2 for i in range(2)):
        raise ValueError(f"{op} padding {padding!r} must be at most half the kernel size {kernel}")
    out_hw = (
        output_size(x.shape[2], pad[0], kernel[0], stride[0], 1),
        output_size(x.shape[3], pad[1], kernel[1], stride[1], 1),
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"{op} kernel {kernel} is larger than the padded input "
            f"{(x.shape[2] + sum(pad[0]), x.shape[3] + sum(pad[1]))} (input shape {x.shape})"
        )
    return PoolGeometry(kernel, stride, pad, out_hw)


@dataclass
class MaxPool2dCache:
    """The input and the geometry; each window's winning tap is found when backward needs it."""

    source: np.ndarray
    padded_shape: tuple[int, ...]
    geometry: PoolGeometry
    argmax: np.ndarray | None = None


def max_pool2d(
    x: np.ndarray, kernel_size, stride=None, padding=0
) -> tuple[np.ndarray, MaxPool2dCache]:
    """y[n,c,i,j] = max over the window of x padded with -inf; stride defaults to kernel_size.

    The forward pass keeps only a running maximum (np.maximum propagates NaN, as PyTorch does);
    which tap won is worked out by :func:`winning_taps` when the backward pass asks, so that
    inference pays for none of it.
    """
    geometry = _geometry(x, kernel_size, stride, padding, "max_pool2d")
    if reference.enabled():
        args = (x, geometry.kernel, geometry.stride, geometry.padding)
        return reference.max_pool2d(*args), reference.Call(reference.max_pool2d_backward, args)
    xp = pad_hw(x, geometry.padding, value=-np.inf)
    out = np.full(x.shape[:2] + geometry.out_hw, -np.inf, dtype=x.dtype)
    plane_bytes = geometry.out_hw[0] * geometry.out_hw[1] * x.itemsize
    for images, channels in cache_blocks(*x.shape[:2], plane_bytes):
        best, source = out[images, channels], xp[images, channels]
        for _, _, rows, columns in geometry.taps():
            np.maximum(best, source[:, :, rows, columns], out=best)
    return out, MaxPool2dCache(x, xp.shape, geometry)


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


def _first_inside_tap(geometry: PoolGeometry) -> np.ndarray:
    """Tap index of each window's first non-padding input, the winner while nothing beats -inf."""
    (top, _), (left, _) = geometry.padding
    u0 = np.maximum(top - geometry.stride[0] * np.arange(geometry.out_hw[0]), 0)
    v0 = np.maximum(left - geometry.stride[1] * np.arange(geometry.out_hw[1]), 0)
    return (u0[:, None] * geometry.kernel[1] + v0[None, :]).astype(np.int32)


def max_pool2d_backward(dout: np.ndarray, cache: MaxPool2dCache) -> np.ndarray:
    """dL/dx: each output's gradient goes to the one input that was its maximum."""
    if isinstance(cache, reference.Call):
        return cache.backward(dout)
    geometry = cache.geometry
    if _compiled.ENABLED:
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
        _compiled.max_pool_backward_2x2(x, grads, cache.argmax, dx)
        return dx
    (top, _), (left, _) = geometry.padding
    small = geometry.out_hw[0] * geometry.out_hw[1] <= WINDOW_KERNEL_MAX_OUTPUTS
    kernel = _compiled.max_pool_backward_by_window if small else _compiled.max_pool_backward
    kernel(
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
    x: np.ndarray, kernel_size, stride=None, padding=0, count_include_pad: bool = True
) -> tuple[np.ndarray, AvgPool2dCache]:
    """y[n,c,i,j] = mean of the window; zero padding counts unless count_include_pad=False."""
    geometry = _geometry(x, kernel_size, stride, padding, "avg_pool2d")
    if reference.enabled():
        args = (geometry.kernel, geometry.stride, geometry.padding, count_include_pad)
        backward_args = (x.shape, *args)
        out = reference.avg_pool2d(x, *args)
        return out, reference.Call(reference.avg_pool2d_backward, backward_args)
    xp = pad_hw(x, geometry.padding)
    out = np.zeros(x.shape[:2] + geometry.out_hw, dtype=x.dtype)
    for _, _, rows, columns in geometry.taps():
        out += xp[:, :, rows, columns]
    if count_include_pad:
        divisor = np.full((1, 1) + geometry.out_hw, geometry.kernel[0] * geometry.kernel[1])
    else:
        inside = pad_hw(np.ones((1, 1) + x.shape[2:]), geometry.padding)
        divisor = np.zeros((1, 1) + geometry.out_hw)
        for _, _, rows, columns in geometry.taps():
            divisor += inside[:, :, rows, columns]
    divisor = divisor.astype(x.dtype)
    out /= divisor
    return out, AvgPool2dCache(divisor, xp.shape, geometry)


def avg_pool2d_backward(dout: np.ndarray, cache: AvgPool2dCache) -> np.ndarray:
    """dL/dx: each output's gradient spread evenly over its window."""
    if isinstance(cache, reference.Call):
        return cache.backward(dout)
    geometry = cache.geometry
    share = dout / cache.divisor
    dxp = np.zeros(cache.padded_shape, dtype=dout.dtype)
    for _, _, rows, columns in geometry.taps():
        dxp[:, :, rows, columns] += share
    return unpad_hw(dxp, geometry.padding)


def adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive bins: [floor(i*size/out), ceil((i+1)*size/out)) for i < out."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def adaptive_output_size(output_size, input_hw: tuple[int, int] | None = None) -> tuple:
    """``output_size`` as (out_h, out_w): an int, or a pair whose None entries take that input
    size (torch's rule); without ``input_hw`` the None entries stay, the others are checked."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2 and None in output_size:
        if input_hw is None:
            for size in output_size:
                if size is not None:
                    pair(size, "output_size")
            return tuple(output_size)
        sizes = zip(output_size, input_hw, strict=True)
        output_size = tuple(size if wanted is None else wanted for wanted, size in sizes)
    return pair(output_size, "output_size")


def adaptive_avg_pool2d(x: np.ndarray, output_size) -> tuple[np.ndarray, tuple]:
    """Average over PyTorch's adaptive bins so that the output is exactly ``output_size``."""
    check_4d(x, "adaptive_avg_pool2d")
    out_h, out_w = adaptive_output_size(output_size, x.shape[2:])
    row_bins = adaptive_bins(x.shape[2], out_h)
    col_bins = adaptive_bins(x.shape[3], out_w)
    out = np.empty(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    for i, (r0, r1) in enumerate(row_bins):
        for j, (c0, c1) in enumerate(col_bins):
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out, (x.shape, row_bins, col_bins)


def adaptive_avg_pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dx: each bin's gradient spread evenly over the bin (bins may overlap)."""
    input_shape, row_bins, col_bins = cache
    dx = np.zeros(input_shape, dtype=dout.dtype)
    for i, (r0, r1) in enumerate(row_bins):
        for j, (c0, c1) in enumerate(col_bins):
            area = (r1 - r0) * (c1 - c0)
            dx[:, :, r0:r1, c0:c1] += (dout[:, :, i, j] / area)[:, :, None, None]
    return dx


def adaptive_max_pool2d(x: np.ndarray, output_size) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Maximum over PyTorch's adaptive bins; also the flat index into H * W of each maximum
    (the first one, row by row, on a tie), as torch's return_indices gives."""
    check_4d(x, "adaptive_max_pool2d")
    out_h, out_w = adaptive_output_size(output_size, x.shape[2:])
    row_bins = adaptive_bins(x.shape[2], out_h)
    col_bins = adaptive_bins(x.shape[3], out_w)
    out = np.empty(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    indices = np.empty(x.shape[:2] + (out_h, out_w), dtype=np.int64)
    width = x.shape[3]
    for i, (r0, r1) in enumerate(row_bins):
        for j, (c0, c1) in enumerate(col_bins):
            window = x[:, :, r0:r1, c0:c1].reshape(x.shape[:2] + (-1,))
            best = window.argmax(axis=2)
            out[:, :, i, j] = np.take_along_axis(window, best[..., None], axis=2)[..., 0]
            rows, cols = np.divmod(best, c1 - c0)
            indices[:, :, i, j] = (r0 + rows) * width + c0 + cols
    return out, indices, (x.shape, indices)


def adaptive_max_pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dx: each bin's gradient goes to its maximum (added up where bins overlap)."""
    input_shape, indices = cache
    n, c, h, w = input_shape
    dx = np.zeros((n * c, h * w), dtype=dout.dtype)
    rows = np.repeat(np.arange(n * c), indices[0, 0].size)
    np.add.at(dx, (rows, indices.reshape(-1)), dout.reshape(-1))
    return dx.reshape(input_shape)


def global_avg_pool2d(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """y[n, c] = mean over (H, W) of x[n, c] (output shape (N, C), as Keras' layer)."""
    check_4d(x, "global_avg_pool2d")
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool2d_backward(dout: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """dL/dx[n, c, h, w] = dL/dy[n, c] / (H * W)."""
    area = input_shape[2] * input_shape[3]
    return np.broadcast_to((dout / area)[:, :, None, None], input_shape).copy()
