"""Adaptive average and max pooling (torch's bins), and Keras' global average pooling.

Output row i of an adaptive pool covers input rows [floor(i*H/out), ceil((i+1)*H/out)) (columns
likewise), so the bins tile the input and overlap by at most a row when out does not divide H.
Averaging over the bins is linear and separable: y = A x B^T per plane, with A (out_h, H) and
B (out_w, W) holding 1/|bin| inside each bin, so forward and backward are two matrix products.
The maximum visits the taps of the largest bin as whole-array gathers (no loop over windows),
with the rules of torch's CPU kernel: the first maximum in row-major order wins ties, a NaN
always wins, and a bin of -inf keeps its first input.
"""

from __future__ import annotations

import numbers

import numpy as np

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
    """left @ x[n, c] @ right.T for every plane, as two large matrix products."""
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
    height, width = x.shape[2:]
    out_h, out_w = resolve_output_size(output_size, x.shape[2:], "adaptive_max_pool2d")
    (row0, row1), (col0, col1) = adaptive_bins(height, out_h), adaptive_bins(width, out_w)
    best = np.full(x.shape[:2] + (out_h, out_w), -np.inf, dtype=x.dtype)
    indices = np.broadcast_to(row0[:, None] * width + col0[None, :], best.shape).copy()
    has_nan = bool(np.isnan(x).any())
    for u in range(int((row1 - row0).max())):
        rows = np.minimum(row0 + u, height - 1)[:, None]
        for v in range(int((col1 - col0).max())):
            columns = np.minimum(col0 + v, width - 1)[None, :]
            window = x[:, :, rows, columns]
            better = window > best
            if has_nan:
                better |= np.isnan(window)
            better &= ((row0 + u < row1)[:, None] & (col0 + v < col1)[None, :])[None, None]
            np.copyto(best, window, where=better)
            np.copyto(indices, rows * width + columns, where=better)
    cache = (x.shape, indices)
    return ((best, indices) if return_indices else best), cache


def adaptive_max_pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dx: each bin's gradient goes to its maximum (summed where overlapping bins share one)."""
    shape, indices = cache
    return scatter_add(dout, indices, shape)


def scatter_add(values: np.ndarray, indices: np.ndarray, shape) -> np.ndarray:
    """out (shape) with out[n, c].flat[indices[n, c, ...]] += values[n, c, ...], repeats summed."""
    planes, area = shape[0] * shape[1], shape[2] * shape[3]
    flat = indices.reshape(planes, -1) + area * np.arange(planes)[:, None]
    total = np.bincount(flat.ravel(), weights=values.ravel(), minlength=planes * area)
    return total.reshape(shape).astype(values.dtype, copy=False)


def global_avg_pool2d(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """y[n, c] = mean over (H, W) of x[n, c] (output shape (N, C), as Keras' layer)."""
    check_4d(x, "global_avg_pool2d")
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool2d_backward(dout: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """dL/dx[n, c, h, w] = dL/dy[n, c] / (H * W)."""
    area = input_shape[2] * input_shape[3]
    return np.broadcast_to((dout / area)[:, :, None, None], input_shape).copy()
