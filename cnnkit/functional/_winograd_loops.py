"""Compiled Winograd F(2x2, 3x3) tile transforms (numba): winograd.py's tile_transform and its
adjoint for F2, written out as Lavin & Gray's formulas, one pass over memory each.

With B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] and
A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], each transform is a 1-D step over a tile's rows, then the
same step over its columns (positions p = 4a + b, a the row):

    V = B^T d B:    (d0 - d2, d1 + d2, d2 - d1, d1 - d3)          d: the 4 x 4 input tile
    Y = A^T M A:    (M0 + M1 + M2, M1 - M2 - M3)                    M: the 16 products
    dM = A dY A^T:  (g0, g0 + g1, g0 - g1, -g1)                     g: the 2 x 2 dL/dy tile
    dd = B dV B^T:  (X0, X1 - X2 + X3, X1 + X2 - X0, -X3)           X: the 16 dL/dV

Each loop handles one tile row of one channel: the row step runs along whole lines (every
tile of the row at once) and the column step along the tiles, both over contiguous runs. The
input is read unpadded (rows and columns off it are the padding's zeros), the output is
written with the bias and an activation's clamp applied (_compiled._clamp_row's rule), and the
input gradient is added where neighbouring tiles overlap. The NumPy code in winograd.py (the
reference, and the only one for F(4, 3)) makes every step a pass with a temporary of its own.
"""

from __future__ import annotations

import numpy as np

from cnnkit.functional._compiled import _clamp_row, _compile, _compile_inline


def _read_rows(plane, first, left, lines):
    """lines[i, left + w] = plane[first + i, w] for every row i of lines (zero for a row off
    the plane); columns outside [left, left + W) are not touched."""
    height, width = plane.shape
    count = min(width, lines.shape[1] - left)
    for i in range(lines.shape[0]):
        row = first + i
        target = lines[i, left : left + count]
        if 0 <= row < height:
            source = plane[row]
            for w in range(count):
                target[w] = source[w]
        else:
            target[:] = 0


def _four_planes(array, first, step, c, base, count):
    """array[first + k*step, c, base : base + count] for k = 0..3: one tile row's values at four
    transform positions (a row a of positions with step 1, a column b with step 4)."""
    stop = base + count
    return (
        array[first, c, base:stop],
        array[first + step, c, base:stop],
        array[first + 2 * step, c, base:stop],
        array[first + 3 * step, c, base:stop],
    )


def _input_transform(x, top, left, tiles_h, tiles_w, out):
    """out[p, c, (n*th + r)*tw + q] = (B^T d B)[p] for the 4x4 tile d of x (N, C, H, W) at row
    2r - top and column 2q - left (zero off x): V of F(2, 3)."""
    n_images, channels = x.shape[:2]
    lines = np.zeros((4, 2 * tiles_w + 2), dtype=x.dtype)
    rows = np.empty((4, 2 * tiles_w + 2), dtype=x.dtype)
    for n in range(n_images):
        for c in range(channels):
            for r in range(tiles_h):
                _read_rows(x[n, c], 2 * r - top, left, lines)
                d0, d1, d2, d3 = lines[0], lines[1], lines[2], lines[3]
                for w in range(lines.shape[1]):
                    rows[0, w] = d0[w] - d2[w]
                    rows[1, w] = d1[w] + d2[w]
                    rows[2, w] = d2[w] - d1[w]
                    rows[3, w] = d1[w] - d3[w]
                base = (n * tiles_h + r) * tiles_w
                for a in range(4):
                    t = rows[a]
                    v0, v1, v2, v3 = _four_planes(out, 4 * a, 1, c, base, tiles_w)
                    for q in range(tiles_w):
                        v0[q] = t[2 * q] - t[2 * q + 2]
                        v1[q] = t[2 * q + 1] + t[2 * q + 2]
                        v2[q] = t[2 * q + 2] - t[2 * q + 1]
                        v3[q] = t[2 * q + 1] - t[2 * q + 3]


def _output_transform(m, tiles_h, tiles_w, bias, shifted, low, high, clamped, out):
    """out[n, c, 2r + i, 2q + j] = (A^T M A)[i, j] of tile (r, q) of m (16, C, N*th*tw), then
    _clamp_row (bias[c] added where ``shifted``, clamped to [low, high] where ``clamped``); the
    part past out (N, C, Ho, Wo) is dropped: Y of F(2, 3) with the layer's epilogue."""
    n_images, channels, height, width = out.shape
    sums = np.empty((2, 4, tiles_w), dtype=out.dtype)
    lines = np.empty((2, 2 * tiles_w), dtype=out.dtype)
    for n in range(n_images):
        for c in range(channels):
            for r in range(tiles_h):
                base = (n * tiles_h + r) * tiles_w
                for b in range(4):
                    m0, m1, m2, m3 = _four_planes(m, b, 4, c, base, tiles_w)
                    for q in range(tiles_w):
                        sums[0, b, q] = m0[q] + m1[q] + m2[q]
                        sums[1, b, q] = m1[q] - m2[q] - m3[q]
                for i in range(min(2, height - 2 * r)):
                    s0, s1, s2, s3 = sums[i, 0], sums[i, 1], sums[i, 2], sums[i, 3]
                    line = lines[i]
                    for q in range(tiles_w):
                        line[2 * q] = s0[q] + s1[q] + s2[q]
                        line[2 * q + 1] = s1[q] - s2[q] - s3[q]
                    _clamp_row(
                        line[:width], out[n, c, 2 * r + i], bias[c], shifted, low, high, clamped
                    )


def _gradient_transform(dout, tiles_h, tiles_w, out):
    """out[p, c, (n*th + r)*tw + q] = (A g A^T)[p] for the 2x2 tile g of dout (N, C, Ho, Wo) at
    (2r, 2q), zero past it: dM of F(2, 3)."""
    n_images, channels = dout.shape[:2]
    lines = np.zeros((2, 2 * tiles_w), dtype=dout.dtype)
    rows = np.empty((4, 2 * tiles_w), dtype=dout.dtype)
    for n in range(n_images):
        for c in range(channels):
            for r in range(tiles_h):
                _read_rows(dout[n, c], 2 * r, 0, lines)
                g0, g1 = lines[0], lines[1]
                for w in range(lines.shape[1]):
                    rows[0, w] = g0[w]
                    rows[1, w] = g0[w] + g1[w]
                    rows[2, w] = g0[w] - g1[w]
                    rows[3, w] = -g1[w]
                base = (n * tiles_h + r) * tiles_w
                for a in range(4):
                    u = rows[a]
                    v0, v1, v2, v3 = _four_planes(out, 4 * a, 1, c, base, tiles_w)
                    for q in range(tiles_w):
                        v0[q] = u[2 * q]
                        v1[q] = u[2 * q] + u[2 * q + 1]
                        v2[q] = u[2 * q] - u[2 * q + 1]
                        v3[q] = -u[2 * q + 1]


def _spread_columns(x0, x1, x2, x3, line):
    """line[2q + j] = the sum over tiles q' of column j - 2(q - q') of (X0, X1 - X2 + X3,
    X1 + X2 - X0, -X3) at q': the column step of B dV B^T, overlaps added."""
    tiles_w = x0.shape[0]
    line[0] = x0[0]
    line[1] = x1[0] - x2[0] + x3[0]
    for q in range(1, tiles_w):
        line[2 * q] = x0[q] + x1[q - 1] + x2[q - 1] - x0[q - 1]
        line[2 * q + 1] = x1[q] - x2[q] + x3[q] - x3[q - 1]
    line[2 * tiles_w] = x1[tiles_w - 1] + x2[tiles_w - 1] - x0[tiles_w - 1]
    line[2 * tiles_w + 1] = -x3[tiles_w - 1]


def _input_gradient(values, tiles_h, tiles_w, top, left, dx):
    """dx[n, c, 2r + i - top, 2q + j - left] += (B X B^T)[i, j] for every tile X of values
    (16, C, N*th*tw), the part off dx (N, C, H, W) dropped: dd of F(2, 3), the adjoint of
    _input_transform (dx holds zeros, or gradients to add to, on entry)."""
    n_images, channels, height, width = dx.shape
    z = np.empty((4, 2 * tiles_w + 2), dtype=dx.dtype)
    rows = np.empty((4, 2 * tiles_w + 2), dtype=dx.dtype)
    count = min(width, rows.shape[1] - left)
    for n in range(n_images):
        for c in range(channels):
            for r in range(tiles_h):
                base = (n * tiles_h + r) * tiles_w
                for a in range(4):
                    x0, x1, x2, x3 = _four_planes(values, 4 * a, 1, c, base, tiles_w)
                    _spread_columns(x0, x1, x2, x3, z[a])
                z0, z1, z2, z3 = z[0], z[1], z[2], z[3]
                for w in range(z.shape[1]):
                    rows[0, w] = z0[w]
                    rows[1, w] = z1[w] - z2[w] + z3[w]
                    rows[2, w] = z1[w] + z2[w] - z0[w]
                    rows[3, w] = -z3[w]
                for i in range(4):
                    row = 2 * r + i - top
                    if 0 <= row < height:
                        target, source = dx[n, c, row], rows[i, left : left + count]
                        for w in range(count):
                            target[w] += source[w]


_read_rows = _compile_inline(_read_rows)
_four_planes = _compile_inline(_four_planes)
_spread_columns = _compile_inline(_spread_columns)
input_transform = _compile(_input_transform)
output_transform = _compile(_output_transform)
gradient_transform = _compile(_gradient_transform)
input_gradient = _compile(_input_gradient)
