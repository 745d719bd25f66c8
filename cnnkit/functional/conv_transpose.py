"""2-D transposed convolution (torch.nn.functional.conv_transpose2d) forward and backward.

The adjoint of conv2d's input gradient: every input pixel scatters its kernel-weighted copy
into the output. With x (N, C_in, H, W), w (C_in, C_out/groups, kH, kW), o an input channel
of group g and c an output channel of that group (Cg = C_out / groups):

    z[n, g*Cg + c, i*s + u*d, j*s + v*d] += x[n, o, i, j] * w[o, c, u, v]
    y[n, :, r, q] = b + z[n, :, r + p_h, q + p_w]          (z is zero past its end)

z has (H - 1)*s + d*(kH - 1) + 1 rows, and y has
H_out = (H - 1)*s - 2p + d*(kH - 1) + output_padding + 1; output_padding (< stride or
< dilation) adds rows at the bottom that no input reaches. The forward pass is one GEMM per
group to columns, cols[(c, u, v), (n, i, j)] = sum_o w[o, c, u, v] x[n, o, i, j], and conv.py's
col2im scatter of those columns into z. The backward pass follows from the chain rule:

    dL/dx[n, o, i, j] = sum_{c, u, v} w[o, c, u, v] dz[n, c, i*s + u*d, j*s + v*d]
    dL/dw[o, c, u, v] = sum_{n, i, j} x[n, o, i, j] dz[n, c, i*s + u*d, j*s + v*d]

with dz = dL/dy padded by p: dL/dx is conv2d of dL/dy with the same w, stride, dilation and
groups, and dL/dw that convolution's weight gradient with x as its upstream gradient, so both
run on conv2d's kernels. dL/db is the sum of dL/dy over (n, r, q).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnkit.functional._args import check_4d, check_float, check_same_dtype, pair
from cnnkit.functional._scratch import scratch
from cnnkit.functional.conv import _add_columns_back, _tile_size, conv2d, conv2d_backward


@dataclass
class ConvTranspose2dCache:
    """The input, the weight and the arguments of the forward pass."""

    x: np.ndarray
    weight: np.ndarray
    has_bias: bool
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


def _arguments(stride, padding, output_padding, dilation):
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    padding = pair(padding, "padding", minimum=0)
    output_padding = pair(output_padding, "output_padding", minimum=0)
    if any(output_padding[i] >= max(stride[i], dilation[i]) for i in range(2)):
        raise ValueError(
            f"conv_transpose2d output_padding {output_padding} must be smaller than either "
            f"stride {stride} or dilation {dilation} in each dimension"
        )
    return stride, padding, output_padding, dilation


def _full_size(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Rows (columns) of z: (size - 1)*stride + dilation*(kernel - 1) + 1."""
    return (size - 1) * stride + dilation * (kernel - 1) + 1


def conv_transpose2d_output_shape(
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> tuple[int, int, int, int]:
    """(N, C_out, H_out, W_out), H_out = (H - 1)*s - 2p + d(k - 1) + output_padding + 1."""
    stride, padding, output_padding, dilation = _arguments(
        stride, padding, output_padding, dilation
    )
    out_hw = tuple(
        _full_size(input_shape[2 + i], weight_shape[2 + i], stride[i], dilation[i])
        - 2 * padding[i]
        + output_padding[i]
        for i in range(2)
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"conv_transpose2d output size {out_hw} is not positive (input shape {input_shape}, "
            f"weight {weight_shape}, stride {stride}, padding {padding}, dilation {dilation})"
        )
    return input_shape[0], weight_shape[1] * groups, out_hw[0], out_hw[1]


def _validate(x, weight, bias, groups) -> None:
    check_4d(x, "conv_transpose2d")
    if not isinstance(weight, np.ndarray) or weight.ndim != 4:
        shape = getattr(weight, "shape", None)
        raise ValueError(
            f"conv_transpose2d expected a 4-D weight (C_in, C_out/groups, kH, kW), got {shape}"
        )
    check_float(weight, "conv_transpose2d", "weight")
    check_same_dtype("conv_transpose2d", input=x, weight=weight, bias=bias)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv_transpose2d groups must be a positive int, got {groups!r}")
    if x.shape[1] != weight.shape[0]:
        raise ValueError(
            f"conv_transpose2d expected input with {weight.shape[0]} channels (weight "
            f"{weight.shape}), got {x.shape[1]} (input shape {x.shape})"
        )
    if weight.shape[0] % groups:
        raise ValueError(
            f"conv_transpose2d groups={groups} must divide the {weight.shape[0]} input channels"
        )
    c_out = weight.shape[1] * groups
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"conv_transpose2d expected bias of shape ({c_out},), got {bias.shape}")


def _scatter(x, weight, groups, stride, dilation) -> np.ndarray:
    """z (N, C_out, Hz, Wz): the GEMM to columns and their col2im, tile by tile of images."""
    n, c_in, h, w = x.shape
    _, cg_out, kh, kw = weight.shape
    full = tuple(
        _full_size(x.shape[2 + i], weight.shape[2 + i], stride[i], dilation[i]) for i in (0, 1)
    )
    z = np.empty((n, cg_out * groups, *full), dtype=x.dtype)
    k = cg_out * kh * kw
    # (groups, Cg_out*kH*kW, C_in/groups): row (c, u, v) holds w[o, c, u, v] for the group's o
    w_groups = weight.reshape(groups, c_in // groups, k).transpose(0, 2, 1)
    tile = _tile_size(groups * k * h * w * x.itemsize, n)
    for start in range(0, n, tile):
        stop = min(start + tile, n)
        width = (stop - start) * h * w
        inputs = scratch("conv transpose inputs", (c_in, stop - start, h, w), x.dtype)
        np.copyto(inputs, x[start:stop].transpose(1, 0, 2, 3))
        cols = scratch("conv transpose columns", (groups, k, width), x.dtype)
        np.matmul(w_groups, inputs.reshape(groups, c_in // groups, width), out=cols)
        _add_columns_back(cols, z[start:stop], (kh, kw), stride, dilation, (h, w))
    return z


def conv_transpose2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> tuple[np.ndarray, ConvTranspose2dCache]:
    """Transposed convolution of x (N, C_in, H, W) with weight (C_in, C_out/groups, kH, kW).

    Arguments in torch.nn.functional.conv_transpose2d's order. Returns the output
    (N, C_out, H_out, W_out) and the cache for :func:`conv_transpose2d_backward`.
    """
    _validate(x, weight, bias, groups)
    out_shape = conv_transpose2d_output_shape(
        x.shape, weight.shape, stride, padding, output_padding, groups, dilation
    )
    stride, padding, output_padding, dilation = _arguments(
        stride, padding, output_padding, dilation
    )
    z = _scatter(x, weight, groups, stride, dilation)
    (top, left), out_hw = padding, out_shape[2:]
    rows = slice(top, top + min(out_hw[0], z.shape[2] - top))
    columns = slice(left, left + min(out_hw[1], z.shape[3] - left))
    reached = z[:, :, rows, columns]
    if reached.shape[2:] == out_hw:
        out = np.ascontiguousarray(reached)
    else:  # output_padding past z's end: rows and columns that no input reaches
        out = np.zeros(out_shape, dtype=x.dtype)
        out[:, :, : reached.shape[2], : reached.shape[3]] = reached
    if bias is not None:
        out += bias[None, :, None, None]
    cache = ConvTranspose2dCache(
        x, weight, bias is not None, stride, padding, output_padding, dilation, groups
    )
    return out, cache


def conv_transpose2d_backward(
    dout: np.ndarray, cache: ConvTranspose2dCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients (dL/dx, dL/dweight, dL/dbias or None) given dL/dy (N, C_out, H_out, W_out)."""
    x, weight = cache.x, cache.weight
    expected = (x.shape[0], weight.shape[1] * cache.groups)
    if dout.ndim != 4 or dout.shape[:2] != expected:
        raise ValueError(
            f"conv_transpose2d_backward expected dout of shape (N={expected[0]}, "
            f"C_out={expected[1]}, ...), got {dout.shape}"
        )
    check_same_dtype("conv_transpose2d_backward", dout=dout, weight=weight)
    dbias = dout.sum(axis=(0, 2, 3)) if cache.has_bias else None
    # dz is dout padded by p on top (left) and up to z's end below (right); the rows of
    # output_padding past z's end only make the convolution longer, and are cropped
    pad = tuple(
        (cache.padding[i], max(cache.padding[i] - cache.output_padding[i], 0)) for i in range(2)
    )
    grads, conv_cache = conv2d(dout, weight, None, cache.stride, pad, cache.dilation, cache.groups)
    h, w = x.shape[2:]
    if grads.shape[2:] == (h, w):
        return grads, conv2d_backward(x, conv_cache, input_gradient=False)[1], dbias
    upstream = np.zeros_like(grads)
    upstream[:, :, :h, :w] = x
    dweight = conv2d_backward(upstream, conv_cache, input_gradient=False)[1]
    return np.ascontiguousarray(grads[:, :, :h, :w]), dweight, dbias
