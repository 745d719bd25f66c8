"""Adaptive average and max pooling (torch's bins), and Keras' global average pooling.

Output row i of an adaptive pool covers input rows [floor(i*H/out), ceil((i+1)*H/out)) (columns
likewise), so the bins tile the input and overlap by at most a row when out does not divide H.
Averaging over the bins is linear and separable: y = A x B^T per plane, with A (out_h, H) and
B (out_w, W) holding 1/|bin| inside each bin, so forward and backward are two matrix products.
The maximum is separable too (over the column bins, then the row bins), each a whole-array
pass per position in the longest bin (no loop over windows), with the rules of torch's CPU
kernel: the first maximum in row-major order wins ties, a NaN always wins, and a bin of -inf
keeps its first input. With numba, a compiled loop (cnnkit.functional._compiled) visits each
bin once instead.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

from cnnkit.functional import _compiled, _parallel
from cnnkit.functional._args import check_4d


def adaptive_output_size(output_size, op: str) -> tuple[int | None, int | None]:
    """``output_size`` as a pair of ints >= 1 or None ("as the input"); raise otherwise."""

    def valid(entry) -> bool:
        integral = isinstance(entry, numbers.Integral) and not isinstance(entry, bool)
        return entry is None or integral

    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        sizes = tuple(output_size)
    elif isinstance(output_size, numbers.Integral) and not isinstance(output_size, bool):
        sizes = (output_size, output_size)
    else:
        sizes = (object(),)
    if not all(valid(entry) for entry in sizes):
        raise TypeError(
            f"{op} output_size must be an int or a pair of ints or None, got {output_size!r}"
        )
    if any(entry is not None and entry < 1 for entry in sizes):
        raise ValueError(f"{op} output_size must be >= 1, got {output_size!r}")
    return tuple(None if entry is None else int(entry) for entry in sizes)


def resolve_output_size(output_size, spatial, op: str) -> tuple[int, int]:
    """(out_h, out_w) for an input of spatial size ``spatial``: None entries take the input's."""
    sizes = adaptive_output_size(output_size, op)
    return tuple(int(spatial[i]) if sizes[i] is None else sizes[i] for i in range(2))


def adaptive_bins(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive bins: starts floor(i*size/out) and ends ceil((i+1)*size/out), i < out."""
    i = np.arange(out)
    return (i * size) // out, -(-((i + 1) * size) // out)


def _averaging(size: int, out: int, dtype) -> np.ndarray:
    """(out, size) matrix with 1/|bin i| on bin i's inputs in row i and zeros elsewhere."""
    start, end = adaptive_bins(size, out)
    position = np.arange(size)
    inside = (position >= start[:, None]) & (position < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _two_sided(x: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left @ x[n, c] @ right.T for every plane, as two large matrix products (on one BLAS
    thread for several images, as a convolution too small to split: see _parallel.run)."""
    task = functools.partial(_two_products, x, left, right)
    return _parallel.run([task], batch=x.shape[0])[0]


def _two_products(x: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    across = (x.reshape(-1, w) @ right.T).reshape(n * c, h, right.shape[0])
    down = np.tensordot(left, across, axes=([1], [1]))
    return np.ascontiguousarray(down.transpose(1, 0, 2)).reshape(n, c, left.shape[0], -1)


def adaptive_avg_pool2d(x: np.ndarray, output_size) -> tuple[np.ndarray, tuple]:
    """y[n,c,i,j] = mean of x[n, c] over row bin i and column bin j (module doc), to
    ``output_size`` (an int, or a pair whose None entries keep the input's size)."""
    check_4d(x, "adaptive_avg_pool2d")
    out_h, out_w = resolve_output_size(output_size, x.shape[2:], "adaptive_avg_pool2d")
    rows = _averaging(x.shape[2], out_h, x.dtype)
    columns = _averaging(x.shape[3], out_w, x.dtype)
    return _two_sided(x, rows, columns), (rows, columns)


def adaptive_avg_pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dx = A^T dy B per plane: each bin's gradient spread evenly over the bin."""
    rows, columns = cache
    return _two_sided(dout, rows.T.astype(dout.dtype), columns.T.astype(dout.dtype))


def adaptive_max_pool2d(x: np.ndarray, output_size, return_indices: bool = False):
    """y[n,c,i,j] = max of x[n, c] over row bin i and column bin j (module doc).

    Returns (out, cache), or ((out, indices), cache) with ``return_indices``: the flat
    position h*W + w in x[n, c] of each maximum (torch.nn.functional.adaptive_max_pool2d).
    """
    check_4d(x, "adaptive_max_pool2d")
    n, c, height, width = x.shape
    out_h, out_w = resolve_output_size(output_size, x.shape[2:], "adaptive_max_pool2d")
    if _compiled.ENABLED:
        best = np.empty((n, c, out_h, out_w), dtype=x.dtype)
        indices = np.empty(best.shape, dtype=np.int64)
        bins = (*adaptive_bins(height, out_h), *adaptive_bins(width, out_w))
        _compiled.adaptive_max_pool(np.ascontiguousarray(x), *bins, best, indices)
    else:
        best, indices = _separable_max(x, out_h, out_w)
    cache = (x.shape, indices, height % out_h == 0 and width % out_w == 0)
    return ((best, indices) if return_indices else best), cache


def _separable_max(x: np.ndarray, out_h: int, out_w: int):
    """adaptive_max_pool2d's (out, indices) in NumPy: over the column bins, then the row bins.

    The first row holding a window's maximum and, in it, the first column is the row-major
    first maximum (and the last NaN row's last NaN the row-major last NaN): torch's winner.
    """
    n, c, height, width = x.shape
    has_nan = bool(np.isnan(x).any())
    # (H, W, N*C): every pass below runs along N*C, a long inner loop even for small planes
    planes_last = np.ascontiguousarray(x.reshape(n * c, height, width).transpose(1, 2, 0))
    across, column = _bin_max(planes_last, out_w, 1, has_nan)
    best, row = _bin_max(across, out_h, 0, has_nan)
    indices = row * width + np.take_along_axis(column, row, axis=0)
    return tuple(a.transpose(2, 0, 1).reshape(n, c, out_h, out_w) for a in (best, indices))


def _bin_max(x: np.ndarray, out: int, axis: int, has_nan: bool):
    """Maximum over each adaptive bin along ``axis`` and its position: the first maximum, or
    the last NaN, one whole-array pass per position in the longest bin."""
    size = x.shape[axis]
    start, end = adaptive_bins(size, out)
    shape = [1] * x.ndim
    shape[axis] = out
    best = np.take(x, start, axis=axis)
    where = np.broadcast_to(start.reshape(shape), best.shape).copy()
    for offset in range(1, int((end - start).max())):
        position = np.minimum(start + offset, size - 1)
        values = np.take(x, position, axis=axis)
        better = values > best
        if has_nan:
            better |= np.isnan(values)
        better &= (start + offset < end).reshape(shape)
        np.copyto(best, values, where=better)
        np.copyto(where, position.reshape(shape), where=better)
    return best, where


def adaptive_max_pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dx: each bin's gradient goes to its maximum (summed where overlapping bins share one)."""
    shape, indices, disjoint = cache
    planes, area = shape[0] * shape[1], shape[2] * shape[3]
    if disjoint:  # bins that tile the input: every input is at most one bin's maximum
        dx = np.zeros((planes, area), dtype=dout.dtype)
        np.put_along_axis(dx, indices.reshape(planes, -1), dout.reshape(planes, -1), axis=1)
        return dx.reshape(shape)
    flat = indices.reshape(planes, -1) + area * np.arange(planes)[:, None]
    total = np.bincount(flat.ravel(), weights=dout.ravel(), minlength=planes * area)
    return total.reshape(shape).astype(dout.dtype, copy=False)


def global_avg_pool2d(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """y[n, c] = mean over (H, W) of x[n, c] (output shape (N, C), as Keras' layer)."""
    check_4d(x, "global_avg_pool2d")
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool2d_backward(dout: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """dL/dx[n, c, h, w] = dL/dy[n, c] / (H * W)."""
    area = input_shape[2] * input_shape[3]
    return np.broadcast_to((dout / area)[:, :, None, None], input_shape).copy()
