"""Stride-1 convolution on a flat zero-padded grid, where im2col copies long contiguous runs.

Lay the input out channel-major on one flat grid G[c, f]: image n, row r, column s sits at
f = lead + (n*Hg + r)*Wg + s in a block of Hg x Wg, where the Q = Hg - H rows below each image
and the P = Wg - W columns right of each row are zeros that serve as the bottom padding of one
image (row) and the top padding of the next, and ``lead`` = top*Wg + left zeros come first.
Output position q = (n*Hg + i)*Wg + j then reads tap (u, v) at G[:, q + off(u, v)] with
off(u, v) = u*d*Wg + v*d, a constant shift, so with W the weight as (C_out, C_in*kH*kW):

    cols[(c, u, v), q] = G[c, q + off(u, v)]          (each row: one contiguous run of G)
    Y = W @ cols                                      (forward)
    dG[:, f] = sum_{u,v} W[:, :, u, v]^T dY[:, f - off(u, v)] = W_rot @ cols'(dY)
    dW[:, c, u, v] = sum_q dY[:, q] G[c, q + off(u, v)] = sum_f dY[:, f - off(u, v)] G[c, f]

where cols'(dY) gathers dY (zero off the Ho x Wo valid outputs) at the offsets of the kernel
rotated by 180 degrees, W_rot: the input gradient is a gather and a GEMM too, with no col2im
scatter-add, and the weight gradient is cols'(dY) @ G^T, the same columns against the grid
itself (a strided view, no copy), so the backward pass gathers once. Y is computed for every q
on the grid and cropped; the price is the (Hg*Wg)/(Ho*Wo) extra arithmetic of the shared border
(1.13x for 16 x 16 images and a 3x3 kernel), the gain that the columns are filled at memcpy
speed instead of Wo values at a time.
The columns are built chunk by chunk, so the column buffer stays within ``CHUNK_BYTES``, and
only kernel row 0's C*kW rows are copied: row u's rows are the same copy shifted by u*d*Wg
columns, a view, so each GEMM above is a sum of kH GEMMs over those views (a copy kH times
smaller for a few more, shorter GEMMs; 10-20% faster on ResNet-20's 16-64 channel layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnkit.functional._args import Padding2d
from cnnkit.functional._scratch import scratch

CHUNK_BYTES = 4 * 2**20
MAX_BORDER_WASTE = 2.0
MAX_WIDENING = 2


@dataclass(frozen=True)
class Grid:
    """Where the flat grid puts everything: see the module docstring."""

    images: int
    height: int
    width: int
    block: tuple[int, int]
    lead: int
    offsets: tuple[int, ...]
    size: int

    @property
    def margin(self) -> int:
        """The largest tap offset, (kH-1)*d*Wg + (kW-1)*d."""
        return self.offsets[-1]

    @property
    def length(self) -> int:
        """The number of output positions q, N*Hg*Wg."""
        return self.images * self.block[0] * self.block[1]

    def blocks(self, array: np.ndarray) -> np.ndarray:
        """Columns [0, length) of a (rows, >= length) array as (rows, N, Hg, Wg)."""
        return array[:, : self.length].reshape(array.shape[0], self.images, *self.block)


def grid_for(input_shape, kernel, padding: Padding2d, dilation) -> Grid:
    """The grid of an (N, C, H, W) input convolved by ``kernel`` with this padding, stride 1."""
    n, _, h, w = input_shape
    (top, bottom), (left, right) = padding
    reach = tuple(dilation[i] * (kernel[i] - 1) for i in range(2))
    # Q >= top and >= bottom for the padding rows, and Ho = H + top + bottom - reach <= Hg
    rows = max(top, bottom, top + bottom - reach[0])
    columns = max(left, right, left + right - reach[1])
    block = (h + rows, w + columns)
    offsets = tuple(
        u * dilation[0] * block[1] + v * dilation[1]
        for u in range(kernel[0])
        for v in range(kernel[1])
    )
    lead, length = top * block[1] + left, n * block[0] * block[1]
    size = max(lead + length, length + offsets[-1])
    return Grid(n, h, w, block, lead, offsets, size)


def plan(x_shape, weight_shape, groups: int, stride, padding: Padding2d, dilation, out_hw):
    """The Grid to run a convolution on, or None where the im2col path should run instead.

    This path takes dense stride-1 convolutions with k > 1 and C_out <= 2 C_in whose grid is
    at most 2x the output. The input gradient gathers C_out*kH*kW rows where col2im would
    scatter C_in*kH*kW, so a layer that widens more than 2x (a first layer on 1 or 3 channels)
    keeps the im2col path: bench/bench.py's layers measured 1.2-2x faster here and 0.6-0.8x at
    4x widening or more.
    """
    c_out, c_in, kh, kw = weight_shape
    if groups != 1 or stride != (1, 1) or (kh, kw) == (1, 1) or c_out > MAX_WIDENING * c_in:
        return None
    grid = grid_for(x_shape, (kh, kw), padding, dilation)
    if grid.block[0] * grid.block[1] > MAX_BORDER_WASTE * out_hw[0] * out_hw[1]:
        return None
    return grid


def input_grid(x: np.ndarray, grid: Grid) -> np.ndarray:
    """G (C, grid.size): x on the grid, zero everywhere else."""
    c = x.shape[1]
    values = np.empty((c, grid.size), dtype=x.dtype)
    values[:, : grid.lead] = 0
    values[:, grid.lead + grid.length :] = 0
    images = grid.blocks(values[:, grid.lead :])
    images[:, :, grid.height :] = 0
    images[:, :, : grid.height, grid.width :] = 0
    images[:, :, : grid.height, : grid.width] = x.transpose(1, 0, 2, 3)
    return values


def _gather(source, start: int, stop: int, kernel, dilation, grid: Grid, buffer) -> list:
    """Kernel row u's columns cols_u[(c, v), j] = source[c, start + off(u, v) + j], j < width.

    Only kernel row 0 is copied, over a span longer by the rows' reach: off(u, v) = off(u, 0) +
    off(0, v), so cols_u is the copy's columns shifted by off(u, 0), a view.
    """
    rows, itemsize = source.shape[0], source.itemsize
    reach = grid.offsets[(kernel[0] - 1) * kernel[1]]
    span = stop - start + reach
    taps = as_strided(
        source[:, start:],
        shape=(rows, kernel[1], span),
        strides=(source.strides[0], dilation[1] * itemsize, itemsize),
        writeable=False,
    )
    columns = buffer[: rows * kernel[1], :span]
    np.copyto(columns.reshape(taps.shape), taps)
    shifts = grid.offsets[:: kernel[1]]
    return [columns[:, shift : shift + stop - start] for shift in shifts]


def _chunks(grid: Grid, rows: int, itemsize: int):
    """The chunk width and the (start, stop) column ranges that keep a gather in CHUNK_BYTES."""
    step = max(256, CHUNK_BYTES // (rows * itemsize) - grid.margin)
    return step, [(start, min(start + step, grid.length)) for start in range(0, grid.length, step)]


def _sum_of_products(matrices, row_columns, out, spare) -> None:
    """out = sum_u matrices[u] @ row_columns[u], with ``spare`` (out's shape) for the terms."""
    np.matmul(matrices[0], row_columns[0], out=out)
    for matrix, columns in zip(matrices[1:], row_columns[1:], strict=True):
        np.matmul(matrix, columns, out=spare)
        out += spare


def forward(values: np.ndarray, grid: Grid, weight: np.ndarray, dilation, out_hw) -> np.ndarray:
    """y (N, C_out, Ho, Wo) = the stride-1 convolution of the input held in ``values``."""
    c_out, c_in, kh, kw = weight.shape
    step, chunks = _chunks(grid, c_in * kw, values.itemsize)
    buffer = scratch("shifted conv columns", (c_in * kw, step + grid.margin), values.dtype)
    spare = scratch("shifted conv partial product", (c_out, step), values.dtype)
    product = scratch("shifted conv output", (c_out, grid.length), values.dtype)
    matrices = [weight[:, :, u].reshape(c_out, c_in * kw) for u in range(kh)]
    for start, stop in chunks:
        row_columns = _gather(values, start, stop, (kh, kw), dilation, grid, buffer)
        _sum_of_products(matrices, row_columns, product[:, start:stop], spare[:, : stop - start])
    out = np.empty((grid.images, c_out, *out_hw), dtype=values.dtype)
    out[...] = grid.blocks(product)[:, :, : out_hw[0], : out_hw[1]].transpose(1, 0, 2, 3)
    return out


def _upstream_grid(dout: np.ndarray, grid: Grid) -> np.ndarray:
    """dY at [margin + q], zero in the margin of max offset, off the valid outputs and after."""
    c_out, (out_h, out_w) = dout.shape[1], dout.shape[2:]
    margin = grid.margin
    grads = scratch("shifted conv upstream", (c_out, margin + grid.length + grid.lead), dout.dtype)
    grads[:, :margin] = 0
    grads[:, margin + grid.length :] = 0
    on_grid = grid.blocks(grads[:, margin:])
    on_grid[:, :, out_h:] = 0
    on_grid[:, :, :out_h, out_w:] = 0
    on_grid[:, :, :out_h, :out_w] = dout.transpose(1, 0, 2, 3)
    return grads


def backward(dout, values: np.ndarray, grid: Grid, weight, dilation):
    """(dL/dx (N, C_in, H, W), dL/dweight) given dL/dy (N, C_out, Ho, Wo)."""
    c_out, c_in, kh, kw = weight.shape
    grads = _upstream_grid(dout, grid)
    # dG[f] reads grads[margin + f - off(u, v)] = grads[f + off(kH-1-u, kW-1-v)]: the gather
    # of dY at f with the rotated kernel's offsets; only f in the images' span is needed
    rotated = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    matrices = [rotated[:, :, u].reshape(c_in, c_out * kw) for u in range(kh)]
    step, chunks = _chunks(grid, c_out * kw, dout.itemsize)
    buffer = scratch("shifted conv columns", (c_out * kw, step + grid.margin), dout.dtype)
    spare = scratch("shifted conv partial product", (c_in, step), dout.dtype)
    dgrid = scratch("shifted conv input gradient", (c_in, grid.length), dout.dtype)
    # kernel row u's columns times G^T: rows (o, v) of dW[o, :, kH-1-u, kW-1-v]
    rotated_dweight = np.zeros((kh, c_out * kw, c_in), dtype=dout.dtype)
    for start, stop in chunks:
        shifted = (grid.lead + start, grid.lead + stop)
        row_columns = _gather(grads, *shifted, (kh, kw), dilation, grid, buffer)
        _sum_of_products(matrices, row_columns, dgrid[:, start:stop], spare[:, : stop - start])
        for u, columns in enumerate(row_columns):
            rotated_dweight[u] += columns @ values[:, shifted[0] : shifted[1]].T
    dx = np.empty((grid.images, c_in, grid.height, grid.width), dtype=dout.dtype)
    dx[...] = grid.blocks(dgrid)[:, :, : grid.height, : grid.width].transpose(1, 0, 2, 3)
    dweight = rotated_dweight.reshape(kh, c_out, kw, c_in)[::-1, :, ::-1].transpose(1, 3, 0, 2)
    return dx, np.ascontiguousarray(dweight)
