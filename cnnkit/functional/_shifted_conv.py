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
itself, so the backward pass gathers once. Y is computed for every q
on the grid and cropped; the price is the (Hg*Wg)/(Ho*Wo) extra arithmetic of the shared border
(1.13x for 16 x 16 images and a 3x3 kernel), the gain that the columns are filled at memcpy
speed instead of Wo values at a time.
The columns are built chunk by chunk of whole grid rows, so that the column buffer stays
within ``CHUNK_BYTES`` and each chunk's outputs are cropped into the images while still cached.
G itself is never built for the whole batch: each chunk's rows of it are filled from the images
(Grid.fill_rows) when the chunk is reached, in both passes, so a layer keeps only its input for
backward, a view of the array the layer before returned, as torch keeps it.
Only kernel row 0's C*kW rows are copied: row u's rows are the same copy shifted by off(u, 0)
columns, so W @ cols = sum_u (W_u @ cols_0) shifted by off(u, 0), with W_u kernel row u's
matrix: one GEMM of all kH row matrices stacked, then kH shifted adds. Against the full copy
and one GEMM, the copy is kH times smaller and the GEMM kH times taller, which is what a layer
with few output channels (ResNet-20's 16 and 32) needs to keep BLAS busy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnkit.functional import _weight_cache
from cnnkit.functional._args import Padding2d
from cnnkit.functional._scratch import scratch

CHUNK_BYTES = 4 * 2**20
MAX_BORDER_WASTE = 2.0
MAX_WIDENING = 2
IM2COL_CHANNELS = 256


@dataclass(frozen=True)
class Grid:
    """Where the flat grid puts everything: see the module docstring."""

    images: int
    height: int
    width: int
    block: tuple[int, int]
    lead: int
    offsets: tuple[int, ...]

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

    def place(self, images: np.ndarray, destination: np.ndarray, start: int) -> np.ndarray:
        """destination (C, ...) with images (N, C, h, w) at columns start + q of the blocks'
        top-left corners, zero in every other column; returns destination."""
        height, width = images.shape[2:]
        destination[:, :start] = 0
        destination[:, start + self.length :] = 0
        on_grid = self.blocks(destination[:, start:])
        on_grid[:, :, height:] = 0
        on_grid[:, :, :height, width:] = 0
        on_grid[:, :, :height, :width] = images.transpose(1, 0, 2, 3)
        return destination

    def fill_rows(self, images: np.ndarray, first_row: int, array: np.ndarray) -> np.ndarray:
        """array (C, k*Wg) = grid rows [first_row, first_row + k) of the blocks of images
        (N, C, h, w): grid row g = n*Hg + r holds row r of image n where 0 <= n < N and r < h,
        zeros right of it; every other row (negative g included) is zero. Returns array.

        The inverse of :meth:`crop_rows`: a run of whole images is one copy, and the rows of
        one chunk are built while they stay in the cache, so no grid of the whole batch is kept.
        """
        block_h, block_w = self.block
        height, width = images.shape[2:]
        lines = array.reshape(array.shape[0], -1, block_w)
        lines[:, :, width:] = 0
        row, last_row, grid_rows = 0, lines.shape[1], self.images * block_h
        while row < last_row:
            g = first_row + row
            if g < 0 or g >= grid_rows:
                stop = min(last_row, row - g) if g < 0 else last_row
                lines[:, row:stop, :width] = 0
                row = stop
                continue
            n, r = divmod(g, block_h)
            whole = min((last_row - row) // block_h, self.images - n) if r == 0 else 0
            if whole:
                run = lines[:, row : row + whole * block_h].reshape(-1, whole, block_h, block_w)
                run[:, :, :height, :width] = images[n : n + whole].transpose(1, 0, 2, 3)
                run[:, :, height:, :width] = 0
                row += whole * block_h
                continue
            stop = min(last_row, row + block_h - r)
            kept = max(0, min(r + stop - row, height) - r)
            lines[:, row : row + kept, :width] = images[n, :, r : r + kept]
            lines[:, row + kept : stop, :width] = 0
            row = stop
        return array

    def columns_of(self, images: np.ndarray, first: int, count: int, purpose: str) -> tuple:
        """(rows, offset): G[:, first + j] = rows[:, offset + j] for j < count, G being
        ``images`` on the grid (zero off them, ``lead`` columns first), built by
        :meth:`fill_rows` in this thread's scratch buffer for ``purpose``."""
        first_row, offset = divmod(first - self.lead, self.block[1])
        lines = -(-(offset + count) // self.block[1])
        rows = scratch(purpose, (images.shape[1], lines * self.block[1]), images.dtype)
        return self.fill_rows(images, first_row, rows), offset

    def crop_rows(self, array: np.ndarray, first_row: int, images: np.ndarray) -> None:
        """Copy the image rows among grid rows [first_row, first_row + k) of a (C, k*Wg) array
        into images (N, C, h, w): grid row g = n*Hg + r is row r of image n, kept if r < h.

        A run of whole images is one copy; an image cut by either end of the rows is copied
        apart, so a chunk of rows costs at most three copies.
        """
        block_h, block_w = self.block
        height, width = images.shape[2:]
        lines = array.reshape(array.shape[0], -1, block_w)
        row, last_row = 0, lines.shape[1]
        while row < last_row:
            n, r = divmod(first_row + row, block_h)
            whole = (last_row - row) // block_h if r == 0 else 0
            if whole:
                run = lines[:, row : row + whole * block_h]
                run = run.reshape(-1, whole, block_h, block_w)[:, :, :height, :width]
                images[n : n + whole] = run.transpose(1, 0, 2, 3)
                row += whole * block_h
                continue
            stop = min(last_row, row + block_h - r)
            kept = min(r + stop - row, height)
            if r < kept:
                images[n, :, r:kept] = lines[:, row : row + kept - r, :width]
            row = stop


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
    return Grid(n, h, w, block, top * block[1] + left, offsets)


def plan(
    x_shape, weight_shape, groups: int, stride, padding: Padding2d, dilation, out_hw, rules=True
):
    """The Grid to run a convolution on, or None where the im2col path should run instead.

    This path takes dense stride-1 convolutions with k > 1 and C_out <= 2 C_in whose grid is
    at most 2x the output. The input gradient works on C_out-channel columns where col2im
    scatters C_in-channel ones, so a layer that widens more than 2x (a first layer on 1 or 3
    channels) keeps the im2col path: bench/bench.py's layers measured 1.2-2x faster here and
    0.6-0.8x at 4x widening or more (with row-0 copies: 0.9x for 3 -> 16 channels, 0.6x for
    1 -> 32). From IM2COL_CHANNELS input channels im2col's deeper GEMM (K = 9 C_in against the
    grid's 3 C_in, and no border) wins over the grid's cheaper copies: bench/conv_paths.py,
    AMD EPYC (Zen 4), ms of forward + all gradients, grid / im2col, batch x C_in x C_out x size,
    two threads: 8x512x512x7 57.2 / 37.5, 16x512x512x7 93.1 / 74.9, 1x512x512x7 21.4 / 7.9,
    16x256x256x7 26.3 / 22.3, 2x256x256x7 8.8 / 5.2, 8x256x256x14 42.3 / 37.6, 4x512x512x14
    84.9 / 72.0, 8x256x256x28 138.7 / 135.1; one thread: 8x512x512x7 89.9 / 68.6, 1x512x512x7
    26.2 / 11.9, 16x256x256x7 42.4 / 37.4; and below it the grid keeps winning (two threads:
    16x192x192x14 42.3 / 43.2, 32x128x128x7 13.9 / 15.2; one: 32x128x128x7 24.4 / 26.0).
    ``rules=False`` (CNNKIT_CONV_PATH=grid) drops these speed rules and keeps only what the
    path needs: one group, stride 1, a kernel larger than 1x1.
    """
    c_out, c_in, kh, kw = weight_shape
    if groups != 1 or stride != (1, 1) or (kh, kw) == (1, 1):
        return None
    grid = grid_for(x_shape, (kh, kw), padding, dilation)
    if not rules:
        return grid
    wasteful = grid.block[0] * grid.block[1] > MAX_BORDER_WASTE * out_hw[0] * out_hw[1]
    deep = c_in >= IM2COL_CHANNELS
    return None if c_out > MAX_WIDENING * c_in or wasteful or deep else grid


def _gather(source, start: int, stop: int, kernel, dilation, grid: Grid, buffer) -> np.ndarray:
    """cols[(c, v), j] = source[c, start + off(0, v) + j] for j < stop - start + off(kH-1, 0).

    Kernel row 0's columns, over a span longer by the other rows' reach: off(u, v) = off(u, 0) +
    off(0, v), so kernel row u's columns are these shifted by off(u, 0).
    """
    rows, itemsize = source.shape[0], source.itemsize
    span = stop - start + grid.offsets[(kernel[0] - 1) * kernel[1]]
    taps = as_strided(
        source[:, start:],
        shape=(rows, kernel[1], span),
        strides=(source.strides[0], dilation[1] * itemsize, itemsize),
        writeable=False,
    )
    columns = buffer[: rows * kernel[1], :span]
    np.copyto(columns.reshape(taps.shape), taps)
    return columns


def _chunks(grid: Grid, rows: int, itemsize: int):
    """The chunk width and the (start, stop) column ranges that keep a gather in CHUNK_BYTES.

    Chunks are whole grid rows, and whole images where an image fits, so that each chunk's
    outputs are cropped into the images while they are still in the cache.
    """
    block_h, block_w = grid.block
    lines = max(1, (CHUNK_BYTES // (rows * itemsize) - grid.margin) // block_w)
    if lines >= block_h:
        lines -= lines % block_h
    step = lines * block_w
    return step, [(start, min(start + step, grid.length)) for start in range(0, grid.length, step)]


def _by_kernel_row(weight: np.ndarray) -> np.ndarray:
    """(kH*C_out, C_in*kW): rows [u*C_out, (u+1)*C_out) are kernel row u's matrix."""
    c_out, c_in, kh, kw = weight.shape
    return weight.transpose(2, 0, 1, 3).reshape(kh * c_out, c_in * kw)


def _shifted_sum(stacked, columns, shifts, out, buffer) -> None:
    """out = sum_u (Z_u)[:, shift_u : shift_u + width], Z = stacked @ columns in ``buffer``.

    Kernel row u's matrix times kernel row u's columns (the columns shifted by shift_u) is
    Z_u's columns shifted by shift_u: one GEMM kH times taller instead of kH GEMMs.
    """
    rows, width = out.shape
    products = buffer[: stacked.shape[0], : columns.shape[1]]
    np.matmul(stacked, columns, out=products)
    terms = [products[u * rows : (u + 1) * rows, s : s + width] for u, s in enumerate(shifts)]
    if len(terms) == 1:
        np.copyto(out, terms[0])
        return
    np.add(terms[0], terms[1], out=out)
    for term in terms[2:]:
        out += term


def forward(x: np.ndarray, grid: Grid, weight: np.ndarray, dilation, out) -> None:
    """out (N, C_out, Ho, Wo) = the stride-1 convolution of x (N, C_in, H, W) on ``grid``."""
    c_out, c_in, kh, kw = weight.shape
    step, chunks = _chunks(grid, c_in * kw, x.itemsize)
    span = step + grid.margin
    buffer = scratch("shifted conv columns", (c_in * kw, span), x.dtype)
    products = scratch("shifted conv kernel-row products", (kh * c_out, span), x.dtype)
    product = scratch("shifted conv output", (c_out, step), x.dtype)
    stacked = _weight_cache.layout(weight, "kernel rows", _by_kernel_row)
    shifts = grid.offsets[::kw]
    for start, stop in chunks:
        rows, offset = grid.columns_of(x, start, stop - start + grid.margin, "shifted conv input")
        columns = _gather(rows, offset, offset + stop - start, (kh, kw), dilation, grid, buffer)
        _shifted_sum(stacked, columns, shifts, product[:, : stop - start], products)
        grid.crop_rows(product[:, : stop - start], start // grid.block[1], out)


def _upstream_grid(dout: np.ndarray, grid: Grid) -> np.ndarray:
    """dY at [margin + q], zero in the margin of max offset, off the valid outputs and after."""
    size = grid.margin + grid.length + grid.lead
    grads = scratch("shifted conv upstream", (dout.shape[1], size), dout.dtype)
    return grid.place(dout, grads, grid.margin)


def backward(dout, x: np.ndarray, grid: Grid, weight, dilation, dx=None) -> np.ndarray:
    """dL/dweight given dL/dy (N, C_out, Ho, Wo) and the input x (N, C_in, H, W); dL/dx goes
    into ``dx`` unless it is None."""
    c_out, c_in, kh, kw = weight.shape
    grads = _upstream_grid(dout, grid)
    # dG[f] reads grads[margin + f - off(u, v)] = grads[f + off(kH-1-u, kW-1-v)]: the gather
    # of dY at f with the rotated kernel's offsets; only f in the images' span is needed
    stacked = _by_kernel_row(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    shifts = grid.offsets[::kw]
    step, chunks = _chunks(grid, c_out * kw, dout.itemsize)
    span = step + grid.margin
    buffer = scratch("shifted conv columns", (c_out * kw, span), dout.dtype)
    products = scratch("shifted conv kernel-row products", (kh * c_in, span), dout.dtype)
    dgrid = scratch("shifted conv input gradient", (c_in, step), dout.dtype)
    # kernel row u's columns times G^T: rows (o, v) of dW[o, :, kH-1-u, kW-1-v]
    rotated_dweight = np.zeros((kh, c_out * kw, c_in), dtype=dout.dtype)
    for start, stop in chunks:
        shifted = (grid.lead + start, grid.lead + stop)
        columns = _gather(grads, *shifted, (kh, kw), dilation, grid, buffer)
        if dx is not None:
            _shifted_sum(stacked, columns, shifts, dgrid[:, : stop - start], products)
            grid.crop_rows(dgrid[:, : stop - start], start // grid.block[1], dx)
        rows, _ = grid.columns_of(x, shifted[0], stop - start, "shifted conv input")
        source = rows[:, : stop - start].T
        for u, shift in enumerate(shifts):
            rotated_dweight[u] += columns[:, shift : shift + stop - start] @ source
    dweight = rotated_dweight.reshape(kh, c_out, kw, c_in)[::-1, :, ::-1].transpose(1, 3, 0, 2)
    return np.ascontiguousarray(dweight)
