"""Max unpooling: the partial inverse of max pooling (torch.nn.functional.max_unpool2d).

Each input value is written at the flat position its max-pool index names in a zero output
plane; the backward pass gathers the upstream gradient at the same positions.
"""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional._args import check_4d, pair


def unpool_output_size(input_hw, kernel_size, stride=None, padding=0, output_size=None):
    """(H_out, W_out): (H - 1)*stride - 2*padding + kernel by default; an ``output_size`` of
    2 or 4 entries (the last two taken) must lie strictly within stride of that, as in torch."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding", minimum=0)
    default = tuple((input_hw[i] - 1) * stride[i] + kernel[i] - 2 * padding[i] for i in range(2))
    if output_size is None:
        sizes = default
    else:
        if not isinstance(output_size, (tuple, list)) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in output_size
        ):
            raise TypeError(
                f"max_unpool2d output_size must be a sequence of ints, got {output_size!r}"
            )
        sizes = tuple(int(s) for s in output_size)
        if len(sizes) == 4:
            sizes = sizes[2:]
        if len(sizes) != 2:
            raise ValueError(
                f"max_unpool2d output_size must have 2 or 4 entries, got {output_size!r}"
            )
        for d in range(2):
            low, high = default[d] - stride[d], default[d] + stride[d]
            if not low < sizes[d] < high:
                raise ValueError(
                    f"max_unpool2d output_size {output_size!r} is invalid: dimension {d} must "
                    f"be strictly between {low} and {high}"
                )
    if min(sizes) < 0:
        raise ValueError(f"max_unpool2d output size {sizes} must not be negative")
    return sizes


def max_unpool2d(
    x: np.ndarray, indices: np.ndarray, kernel_size, stride=None, padding=0, output_size=None
) -> tuple[np.ndarray, tuple]:
    """y[n, c].flat[indices[n, c, i, j]] = x[n, c, i, j], zero elsewhere (max pool's inverse)."""
    check_4d(x, "max_unpool2d")
    if not isinstance(indices, np.ndarray) or not np.issubdtype(indices.dtype, np.integer):
        what = indices.dtype if isinstance(indices, np.ndarray) else type(indices).__name__
        raise TypeError(f"max_unpool2d expected integer indices (numpy.ndarray), got {what}")
    if indices.shape != x.shape:
        raise ValueError(
            f"max_unpool2d expected indices of the input's shape {x.shape}, got {indices.shape}"
        )
    out_hw = unpool_output_size(x.shape[2:], kernel_size, stride, padding, output_size)
    area = out_hw[0] * out_hw[1]
    flat = indices.reshape(x.shape[0], x.shape[1], -1).astype(np.int64)
    invalid = (flat < 0) | (flat >= area)
    if invalid.any():
        raise ValueError(
            f"max_unpool2d found an invalid max index {flat[invalid][0]} "
            f"(output planes are {out_hw[0]}x{out_hw[1]})"
        )
    out = np.zeros(x.shape[:2] + (area,), dtype=x.dtype)
    np.put_along_axis(out, flat, x.reshape(flat.shape), axis=2)
    return out.reshape(x.shape[:2] + out_hw), (flat, x.shape)


def max_unpool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dx[n, c, i, j] = dL/dy[n, c].flat[indices[n, c, i, j]]."""
    flat, input_shape = cache
    planes = dout.reshape(dout.shape[0], dout.shape[1], -1)
    return np.take_along_axis(planes, flat, axis=2).reshape(input_shape)
