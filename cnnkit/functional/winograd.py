"""Winograd convolution F(m x m, 3 x 3) for dense 3x3 stride-1 layers (Lavin & Gray, 2016).

An output tile of m x m values reads an input tile d of alpha x alpha = (m + 2) x (m + 2);
with the transforms B^T (alpha x alpha), G (alpha x 3) and A^T (m x alpha) of F(m, 3),

    U = G W G^T                  (per filter, alpha x alpha)
    V = B^T d B                  (per input tile and channel)
    M[p] = U[p] @ V[p]           (for every transform position p = (a, b): (C_out, C_in) @
                                  (C_in, tiles), alpha^2 GEMMs in place of one 9x deeper one)
    Y = A^T M A                  (per output tile)

computes the 3x3 cross-correlation of every tile with (m + 2)^2 / (9 m^2) of the multiplies:
0.44x for F(2, 3) and 0.25x for F(4, 3). Tiles cover the padded input every m rows and columns;
the input is zero-padded at the bottom/right to a whole number of tiles and the extra outputs
are cropped. Each step is X -> L X L^T over a tile's two axes (:func:`sandwich`), whose adjoint
is Y -> L^T Y L, so the backward pass is the same steps transposed, in reverse order:

    dM = A dY A^T,   dU[p] = dM[p] @ V[p]^T,   dW = G^T dU G,
    dV[p] = U[p]^T @ dM[p],   dd = B dV B^T, summed back where the input tiles overlap.

Rounding. The transforms' entries grow with m (F(4, 3)'s A^T holds 8, its B^T 5), so float32
rounding grows too. bench/winograd_error.py on this machine (C_in = C_out, He-initialised
weights, unit normal input and dL/dy, batch 8, 16 x 16, 3x3 'same'), each entry the worst
|y32 - y64| / max |y64|, and in brackets the worst |y32 - y64| / (1e-5 + 1e-4 |y64|), which
is at most 1 where the tests' float32 tolerance (rtol 1e-4, atol 1e-5) holds:

    C_in               16            64            128           256           512
    im2col  output     3.9e-7 (0.08) 5.7e-7 (0.26) 5.7e-7 (0.20) 5.2e-7 (0.19) 4.4e-7 (0.23)
    F(2, 3) output     1.9e-7 (0.08) 3.5e-7 (0.14) 4.9e-7 (0.20) 7.1e-7 (0.30) 5.5e-7 (0.32)
    F(2, 3) dL/dx      2.2e-7 (0.09) 3.1e-7 (0.12) 4.3e-7 (0.20) 5.8e-7 (0.32) 5.0e-7 (0.25)
    F(4, 3) output     3.6e-6 (1.39) 7.1e-6 (1.87) 8.9e-6 (2.73) 1.6e-5 (5.91) 1.1e-5 (4.81)
    F(4, 3) dL/dx      2.5e-6 (0.62) 3.7e-6 (1.11) 5.3e-6 (1.86) 7.9e-6 (2.56) 5.6e-6 (2.73)
    im2col  dL/dW      4.4e-7 (3.21) 5.8e-7 (2.78) 3.9e-7 (3.10) 3.8e-7 (3.23) 3.8e-7 (4.33)
    F(2, 3) dL/dW      2.7e-7 (1.27) 6.9e-7 (3.84) 5.1e-7 (6.20) 6.4e-7 (7.32) 4.9e-7 (6.07)
    F(4, 3) dL/dW      1.9e-6 (4.13) 6.2e-6 (26.0) 6.5e-6 (36.8) 8.1e-6 (55.4) 4.4e-6 (48.0)

(dL/dW, a sum over 2048 positions, has entries near zero that no float32 path meets to rtol
1e-4.) F(2, 3) rounds like im2col; F(4, 3) rounds 10-20x worse and misses the tolerance at
every size, so the automatic choice uses it for float64 only, where it stays near 1e-14.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnkit.functional import _compiled, _weight_cache, _winograd_loops
from cnnkit.functional._args import pad_hw, unpad_hw
from cnnkit.functional._scratch import scratch

CHUNK_BYTES = 8 * 2**20


@dataclass(frozen=True)
class Transforms:
    """B^T, G and A^T of F(m x m, 3 x 3) in float64, and the output tile size m."""

    m: int
    bt: np.ndarray
    g: np.ndarray
    at: np.ndarray

    @property
    def alpha(self) -> int:
        """The input tile size m + 2."""
        return self.m + 2


F2 = Transforms(
    2,
    np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float),
    np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
    np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float),
)
F4 = Transforms(
    4,
    np.array(
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        dtype=float,
    ),
    np.array(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ]
    ),
    np.array(
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
        dtype=float,
    ),
)
TRANSFORMS = {2: F2, 4: F4}


def applies(weight_shape, groups: int, stride, dilation) -> bool:
    """Whether Winograd F(m, 3) computes this convolution: 3x3, stride 1, dilation 1, dense."""
    return tuple(weight_shape[2:]) == (3, 3) and groups == 1 and stride == dilation == (1, 1)


def tiles(out_hw, m: int) -> tuple[int, int]:
    """(tile rows, tile columns) = (ceil(Ho / m), ceil(Wo / m))."""
    return -(-out_hw[0] // m), -(-out_hw[1] // m)


def sandwich(left: np.ndarray, x: np.ndarray) -> np.ndarray:
    """L X L^T over the first two axes: out[i, j] = sum_{a,b} L[i, a] L[j, b] x[a, b], (l, l, R)."""
    p, q, rest = x.shape
    rows = (left @ x.reshape(p, q * rest)).reshape(left.shape[0], q, rest)
    return np.matmul(left, rows)


def _matrices(transforms: Transforms, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B^T, G, A^T) in ``dtype``."""
    return tuple(a.astype(dtype) for a in (transforms.bt, transforms.g, transforms.at))


def weight_transform(weight: np.ndarray, transforms: Transforms) -> np.ndarray:
    """U = G W G^T for every filter, as (alpha^2, C_out, C_in)."""
    c_out, c_in = weight.shape[:2]
    g = transforms.g.astype(weight.dtype)
    taps = np.ascontiguousarray(weight.transpose(2, 3, 0, 1)).reshape(3, 3, c_out * c_in)
    return sandwich(g, taps).reshape(transforms.alpha**2, c_out, c_in)


def weight_gradient(du: np.ndarray, transforms: Transforms) -> np.ndarray:
    """dW = G^T dU G, the adjoint of :func:`weight_transform`: (C_out, C_in, 3, 3)."""
    alpha, (_, c_out, c_in) = transforms.alpha, du.shape
    gt = transforms.g.T.astype(du.dtype)
    taps = sandwich(gt, du.reshape(alpha, alpha, c_out * c_in))
    return np.ascontiguousarray(taps.reshape(3, 3, c_out, c_in).transpose(2, 3, 0, 1))


def transformed_weight(weight: np.ndarray, transforms: Transforms) -> np.ndarray:
    """U = G W G^T: cached under cnnkit.no_grad() (see cnnkit.functional._weight_cache)."""
    return _weight_cache.layout(
        weight, ("winograd", transforms.m), lambda w: weight_transform(w, transforms)
    )


def _chunks(n: int, per_image_bytes: int):
    """Image ranges whose transformed tiles stay within CHUNK_BYTES (at least one image)."""
    step = max(1, min(n, CHUNK_BYTES // max(per_image_bytes, 1)))
    return [(start, min(start + step, n)) for start in range(0, n, step)]


def tile_transform(source: np.ndarray, left: np.ndarray, step: int, tiles_hw) -> np.ndarray:
    """L d L^T for every k x k tile d of source (N, C, H, W) starting each ``step`` rows and
    columns (L = left, l x k; zero past the source): (l, l, C, N*th*tw), tiles in (n, tile
    row, tile column) order."""
    n, c = source.shape[:2]
    size, reach = left.shape
    th, tw = tiles_hw
    out = np.empty((size, size, c, n * th * tw), dtype=source.dtype)
    covered = (step * (th - 1) + reach, step * (tw - 1) + reach)
    extended = np.zeros((n, c, *covered), dtype=source.dtype)
    kept = (min(covered[0], source.shape[2]), min(covered[1], source.shape[3]))
    extended[:, :, : kept[0], : kept[1]] = source[:, :, : kept[0], : kept[1]]
    sn, sc, sh, sw = extended.strides
    fields = as_strided(
        extended,
        shape=(reach, reach, c, n, th, tw),
        strides=(sh, sw, sc, sn, step * sh, step * sw),
        writeable=False,
    )
    d = scratch("winograd tiles", fields.shape, source.dtype)
    np.copyto(d, fields)
    out[...] = sandwich(left, d.reshape(reach, reach, -1)).reshape(out.shape)
    return out


def tile_transform_adjoint(values: np.ndarray, left: np.ndarray, step: int, tiles_hw, dest) -> None:
    """The adjoint of :func:`tile_transform`: dest (N, C, H, W) = the sum of L^T X L of every
    tile X of values (l, l, C, N*th*tw) at the tile's place (overlaps added, the part past dest
    dropped)."""
    n, c, h, w = dest.shape
    size, reach = left.shape
    th, tw = tiles_hw
    dd = sandwich(left.T, values.reshape(size, size, -1)).reshape(reach, reach, c, n, th, tw)
    summed = np.zeros((c, n, step * (th - 1) + reach, step * (tw - 1) + reach), dtype=dd.dtype)
    for u in range(reach):
        for v in range(reach):
            summed[:, :, u : u + step * th : step, v : v + step * tw : step] += dd[u, v]
    dest[...] = summed[:, :, :h, :w].transpose(1, 0, 2, 3)


def fuses_epilogue(transforms: Transforms) -> bool:
    """Whether :func:`forward` runs the compiled F(2, 3) loops, which add the bias and apply the
    clamp as they write the output (cnnkit.functional._winograd_loops)."""
    return transforms.m == 2 and _compiled.ENABLED


def _input_tiles(x, padding, transforms: Transforms, tiles_hw, purpose: str) -> np.ndarray:
    """V = B^T d B of every tile of x padded by ``padding``: (alpha^2, C, N*th*tw)."""
    alpha, m = transforms.alpha, transforms.m
    if fuses_epilogue(transforms):
        v = scratch(
            purpose, (alpha**2, x.shape[1], x.shape[0] * tiles_hw[0] * tiles_hw[1]), x.dtype
        )
        (top, _), (left, _) = padding
        _winograd_loops.input_transform(np.ascontiguousarray(x), top, left, *tiles_hw, v)
        return v
    bt = transforms.bt.astype(x.dtype)
    return tile_transform(pad_hw(x, padding), bt, m, tiles_hw).reshape(alpha**2, x.shape[1], -1)


def forward(x, padding, weight, transforms: Transforms, out, bias=None, clamp=None) -> None:
    """out = y (N, C_out, Ho, Wo) of x (N, C_in, H, W) padded by ``padding``: V = B^T d B,
    M = U V, Y = A^T M A; then + bias and clamped to clamp = (low, high), each unless None,
    which only the compiled loops take (see :func:`fuses_epilogue`)."""
    fused = fuses_epilogue(transforms)
    if not fused and (bias is not None or clamp is not None):
        raise ValueError(f"winograd.forward of F({transforms.m}, 3) takes no bias or clamp")
    n, c_in = x.shape[:2]
    c_out, alpha, m = weight.shape[0], transforms.alpha, transforms.m
    u = transformed_weight(weight, transforms)
    tiles_hw = tiles(out.shape[2:], m)
    per_image = alpha**2 * (c_in + c_out) * tiles_hw[0] * tiles_hw[1] * x.itemsize
    shift = np.zeros(c_out, x.dtype) if bias is None else bias
    low, high = (x.dtype.type(0), x.dtype.type(0)) if clamp is None else clamp
    at = transforms.at.astype(x.dtype)
    for start, stop in _chunks(n, per_image):
        v = _input_tiles(x[start:stop], padding, transforms, tiles_hw, "winograd tiles")
        mt = scratch("winograd products", (alpha**2, c_out, v.shape[2]), x.dtype)
        np.matmul(u, v, out=mt)
        if fused:
            epilogue = (shift, bias is not None, low, high, clamp is not None)
            _winograd_loops.output_transform(mt, *tiles_hw, *epilogue, out[start:stop])
            continue
        tile_transform_adjoint(
            mt.reshape(alpha, alpha, c_out, -1), at.T, m, tiles_hw, out[start:stop]
        )


def backward(dout, x, padding, weight, transforms: Transforms, input_grad=True):
    """(dL/dx (N, C_in, H, W) or None without ``input_grad``, dL/dweight) given dL/dy and the
    input x padded by ``padding``: dM = A dY A^T, dU = dM V^T, dV = U^T dM, dd = B dV B^T."""
    n, c_in, h, w = x.shape
    c_out, alpha, m = weight.shape[0], transforms.alpha, transforms.m
    fused = fuses_epilogue(transforms)
    bt, _, at = _matrices(transforms, x.dtype)
    u = weight_transform(weight, transforms) if input_grad else None
    du = np.zeros((alpha**2, c_out, c_in), dtype=x.dtype)
    (top, bottom), (left, right) = padding
    padded_shape = (n, c_in, h + top + bottom, w + left + right)
    dx = None
    if input_grad:
        dx = np.zeros_like(x) if fused else np.empty(padded_shape, dtype=x.dtype)
    tiles_hw = tiles(dout.shape[2:], m)
    per_image = alpha**2 * (c_in + c_out) * tiles_hw[0] * tiles_hw[1] * x.itemsize
    for start, stop in _chunks(n, per_image):
        v = _input_tiles(x[start:stop], padding, transforms, tiles_hw, "winograd tiles")
        if fused:
            dm = scratch("winograd upstream", (alpha**2, c_out, v.shape[2]), x.dtype)
            _winograd_loops.gradient_transform(
                np.ascontiguousarray(dout[start:stop]), *tiles_hw, dm
            )
        else:
            dm = tile_transform(dout[start:stop], at.T, m, tiles_hw).reshape(alpha**2, c_out, -1)
        du += np.matmul(dm, v.transpose(0, 2, 1))
        if input_grad:
            dv = scratch("winograd input gradient", v.shape, x.dtype)
            np.matmul(u.transpose(0, 2, 1), dm, out=dv)
            if fused:
                _winograd_loops.input_gradient(dv, *tiles_hw, top, left, dx[start:stop])
            else:
                tile_transform_adjoint(
                    dv.reshape(alpha, alpha, c_in, -1), bt, m, tiles_hw, dx[start:stop]
                )
    if input_grad and not fused:
        dx = unpad_hw(dx, padding)
    return dx, weight_gradient(du, transforms)
