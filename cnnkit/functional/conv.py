"""2-D convolution (cross-correlation) forward and backward passes.

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * xpad[n, g*Cg + c, i*s + u*d, j*s + v*d]

with g the group of output channel o and Cg = C_in / groups. The backward pass follows from the
chain rule: dL/dw is the correlation of the padded input with dL/dy, dL/db the sum of dL/dy over
(n, i, j), and dL/dx the transposed convolution of dL/dy with w.

The general path is im2col (a strided view of every receptive field, copied into a column buffer
tile by tile so that the buffer stays under ``COLUMN_BUDGET_BYTES``) followed by one batched GEMM;
the gradient of the input goes back through col2im as kH*kW strided slice-adds. Depthwise
convolution (groups == C_in == C_out) takes kH*kW shifted multiply-adds instead, or, with numba
installed, the single-pass loops of cnnkit.functional._compiled. A 1x1 convolution is a plain
GEMM per image on every stride-th input (the input itself at stride 1), with no im2col. A dense
stride-1 convolution gathers its columns from a flat, channel-major copy of the padded input
instead, where every receptive-field row is one long contiguous run (_shifted_conv), and a wide
3x3 stride-1 one takes Winograd's F(2x2, 3x3) or F(4x4, 3x3) (cnnkit.functional.winograd).

Which path runs is chosen per call by :func:`_select`: ``CNNKIT_CONV_PATH`` (auto, winograd2,
winograd4, grid, im2col, pointwise; read at every call) forces its path on every layer that
path can compute (winograd: 3x3, stride 1, dilation 1, one group; grid: one group, stride 1,
kernel larger than 1x1; im2col: every layer; pointwise: 1x1, one group), and every other layer
keeps the automatic rule, measured on this machine (see :func:`_winograd_rule` and
_shifted_conv.plan). ``CNNKIT_KERNELS=reference`` runs the reference loops whatever the switch.
With more than one BLAS thread the batch is split between that many threads, each running the
chosen path on its own images with single-threaded BLAS (cnnkit.functional._parallel); the
weight gradient is the sum of the parts'.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnkit.functional import _compiled, _parallel, _shifted_conv, reference, winograd
from cnnkit.functional._args import (
    Padding2d,
    cache_blocks,
    check_4d,
    check_float,
    check_same_dtype,
    output_size,
    pad_hw,
    pair,
    resolve_padding,
    unpad_hw,
    window_slice,
)
from cnnkit.functional._scratch import scratch

COLUMN_BUDGET_BYTES = 4 * 2**20
# a convolution's multiply-adds count as one value of work per MACS_PER_VALUE toward the part
# floor (_parallel.MIN_PART_BYTES: 6.3 M float32 multiply-adds a part). Forward / backward ms,
# unsplit vs two parts, AMD EPYC (Zen 4): 4 x 16 -> 16 x 32^2 3x3 (9.4 M) 0.44 / 0.76 vs
# 0.50 / 0.78; 16 x 32 -> 32 x 8^2 (9.4 M) 0.46 / 0.80 vs 0.60 / 0.78; LeNet-5's 64 x 6 -> 16
# x 10^2 5x5 (15 M) 1.38 / 2.98 vs 0.94 / 1.71; 64 x 6 -> 16 x 14^2 5x5 (30 M) 2.49 / 5.22 vs
# 1.64 / 2.99; 2 x 512 -> 512 x 7^2 3x3 (231 M, 196 KiB in) 6.00 / 12.4 vs 3.24 / 8.53
MACS_PER_VALUE = 96
PATH_VARIABLE = "CNNKIT_CONV_PATH"
PATH_CHOICES = ("auto", "winograd2", "winograd4", "grid", "im2col", "pointwise")
WINOGRAD_PATHS = {"winograd2": 2, "winograd4": 4}


@dataclass
class Conv2dCache:
    """What the backward pass needs from the forward pass, and which kernel ran.

    ``path`` names the kernels, and each of ``parts`` (one per thread the batch was split
    between, see cnnkit.functional._parallel) holds its images' slice and ``saved``, the one
    array the kernels read back. It is the part's input itself, a view of the array the layer
    before returned (as torch keeps a convolution's input), on every path but two: "grid" lays
    it out on the part's flat grid ``grid`` of _shifted_conv chunk by chunk, "pointwise" (1x1
    kernel, one group) samples every stride-th pixel again, "depthwise" (compiled) copies it into
    phase planes, padding included, as it goes, and "im2col" (forced by CNNKIT_CONV_PATH,
    depthwise layers included) and "padded" (every other kernel) pad it a tile at a time, and
    "winograd2" and "winograd4" (F(2x2, 3x3) and F(4x4, 3x3)) read it unpadded in the compiled
    F(2, 3) loops and pad it a chunk of images at a time in NumPy. The one that keeps the padded
    input: "padded" for a depthwise layer without numba (NumPy's tap-by-tap loops).
    """

    input_shape: tuple[int, int, int, int]
    weight: np.ndarray
    has_bias: bool
    padding: Padding2d
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    path: str
    parts: tuple[ImagePart, ...]


@dataclass(frozen=True)
class ImagePart:
    """The images ``images`` of a batch that one thread convolved, and what it saved of them."""

    images: slice
    saved: np.ndarray
    grid: _shifted_conv.Grid | None = None


def conv2d_output_shape(
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride=1,
    padding=0,
    dilation=1,
) -> tuple[int, int, int, int]:
    """Output shape (N, C_out, H_out, W_out), H_out = floor((H + 2p - d(k-1) - 1)/s) + 1."""
    n, _, h, w = input_shape
    kernel = weight_shape[2:]
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    pad = resolve_padding(padding, (h, w), kernel, stride, dilation)
    return (
        n,
        weight_shape[0],
        output_size(h, pad[0], kernel[0], stride[0], dilation[0]),
        output_size(w, pad[1], kernel[1], stride[1], dilation[1]),
    )


def _validate(x, weight, bias, groups) -> None:
    check_4d(x, "conv2d")
    if not isinstance(weight, np.ndarray) or weight.ndim != 4:
        shape = getattr(weight, "shape", None)
        raise ValueError(f"conv2d expected a 4-D weight (C_out, C_in/groups, kH, kW), got {shape}")
    check_float(weight, "conv2d", "weight")
    check_same_dtype("conv2d", input=x, weight=weight, bias=bias)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d groups must be a positive int, got {groups!r}")
    c_in, c_out = x.shape[1], weight.shape[0]
    if c_in != weight.shape[1] * groups:
        raise ValueError(
            f"conv2d expected input with {weight.shape[1] * groups} channels "
            f"(weight {weight.shape}, groups={groups}), got {c_in} (input shape {x.shape})"
        )
    if c_out % groups:
        raise ValueError(f"conv2d groups={groups} must divide the {c_out} output channels")
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"conv2d expected bias of shape ({c_out},), got {bias.shape}")


def _is_depthwise(x_shape, weight_shape, groups: int) -> bool:
    return groups == x_shape[1] == weight_shape[0] and groups > 1


def _is_pointwise(weight_shape, groups: int) -> bool:
    return tuple(weight_shape[2:]) == (1, 1) and groups == 1


def _sampled(xp: np.ndarray, stride) -> np.ndarray:
    """The inputs a 1x1 kernel reads, xp[:, :, ::s_h, ::s_w], contiguous (xp itself at stride 1)."""
    return np.ascontiguousarray(xp[:, :, :: stride[0], :: stride[1]])


def path_setting() -> str:
    """CNNKIT_CONV_PATH (default auto), read at every call; ValueError for an unknown value."""
    value = os.environ.get(PATH_VARIABLE, "auto").strip().lower() or "auto"
    if value not in PATH_CHOICES:
        raise ValueError(
            f"{PATH_VARIABLE}={os.environ[PATH_VARIABLE]!r} is not one of {', '.join(PATH_CHOICES)}"
        )
    return value


def _forced(setting, x_shape, weight_shape, groups, stride, pad, dilation, out_hw):
    """The CNNKIT_CONV_PATH path if it can take this layer, else None."""
    if setting in WINOGRAD_PATHS and winograd.applies(weight_shape, groups, stride, dilation):
        return setting
    if setting == "grid":
        grid = _shifted_conv.plan(
            x_shape, weight_shape, groups, stride, pad, dilation, out_hw, rules=False
        )
        return None if grid is None else "grid"
    if setting == "im2col":
        return "im2col"
    if setting == "pointwise" and _is_pointwise(weight_shape, groups):
        return "pointwise"
    return None


def _select(
    x_shape, weight_shape, groups, stride, pad, dilation, out_hw, dtype, blas_threads, parts
):
    """The path for this layer: CNNKIT_CONV_PATH's where it can take the layer, otherwise the
    measured rule (see docs/performance.md) for kernels running ``blas_threads`` BLAS threads
    on each of ``parts`` threads."""
    setting = path_setting()
    forced = _forced(setting, x_shape, weight_shape, groups, stride, pad, dilation, out_hw)
    if forced is not None:
        return forced
    winograd_path = _winograd_rule(
        x_shape, weight_shape, groups, stride, dilation, out_hw, dtype, blas_threads, parts
    )
    if winograd_path is not None:
        return winograd_path
    if _shifted_conv.plan(x_shape, weight_shape, groups, stride, pad, dilation, out_hw):
        return "grid"
    if _is_pointwise(weight_shape, groups):
        return "pointwise"
    depthwise = _is_depthwise(x_shape, weight_shape, groups)
    if _compiled.ENABLED and depthwise:
        return "depthwise"
    return "padded"


def _plan(x_shape, weight_shape, groups, stride, pad, dilation, out_hw, dtype):
    """(path, the image slices of the threads that run it): the reference loops on the whole
    batch under CNNKIT_KERNELS=reference, else one part per BLAS thread and _select's path for
    a part (whose kernels run one BLAS thread each when there are several parts)."""
    if reference.enabled():
        return "reference", [slice(0, x_shape[0])]
    # a part's work is the largest of its input's size, its output's, and its multiply-adds
    # over MACS_PER_VALUE: 16 images of 160 x 7 x 7 into 960 channels (MobileNetV2) are 0.5 MB
    # in, 3 MB out and 3 ms of GEMMs (2.89 -> 1.77 ms split); LeNet-5's second layer at batch
    # 64 is 0.3 MB in, 0.4 MB out and 15 M multiply-adds
    outputs = x_shape[0] * weight_shape[0] * out_hw[0] * out_hw[1]
    macs = outputs * int(np.prod(weight_shape[1:]))
    values = max(int(np.prod(x_shape)), outputs, macs // MACS_PER_VALUE)
    slices = _parallel.parts_for(x_shape[0], values * np.dtype(dtype).itemsize)
    part_shape = (max(part.stop - part.start for part in slices), *x_shape[1:])
    blas_threads = 1 if len(slices) > 1 else _parallel.blas_threads()
    path = _select(
        part_shape,
        weight_shape,
        groups,
        stride,
        pad,
        dilation,
        out_hw,
        dtype,
        blas_threads,
        len(slices),
    )
    return path, slices


def _winograd_rule(
    x_shape, weight_shape, groups, stride, dilation, out_hw, dtype, blas_threads, parts
) -> str | None:
    """The Winograd path the measured rule picks for this layer, or None.

    With numba, F(2, 3)'s tile transforms are compiled loops (cnnkit.functional._winograd_loops)
    and F(2, 3) wins from 64 channels on outputs of at least 14 x 14 in training and from 32 in
    inference. Forced paths (CNNKIT_CONV_PATH, bench/conv_paths.py-like script), AMD EPYC
    (Zen 4), float32, ms, auto (grid / im2col) vs F(2, 3), batch x C_in x C_out x size:

        forward + all gradients, two threads   128x16x16x32 27.2 / 32.9   128x32x32x16 20.3 / 23.1
        (batch split)                          128x64x64x8  18.2 / 18.1   64x64x64x16  30.0 / 27.0
                                               32x64x64x32  53.8 / 42.7   16x64x64x56  76.6 / 49.8
                                               64x128x128x16 106 / 71.3   32x128x128x32 188 / 121
                                               8x512x512x7  36.2 / 58.4
        the same, one thread                   128x32x32x16 32.4 / 38.7   64x64x64x16  51.1 / 45.8
                                               128x64x64x8  29.5 / 30.6   16x64x64x56  135  / 90.2
        inference forward, two BLAS threads    1x32x64x112  4.08 / 3.21   1x64x64x56   1.68 / 1.46
        (batch 1) or batch split               1x128x128x28 1.85 / 1.74   1x512x512x7  3.71 / 3.35
                                               2x64x64x56   3.49 / 2.08   16x64x64x28  6.63 / 5.14
        inference forward, one thread          1x32x64x56   1.55 / 1.02   1x64x64x56   2.81 / 1.72
                                               1x512x512x7  3.18 / 4.39

    (7 x 7 outputs waste 31% of the tiles' work on their padding: inference takes F(2, 3) there
    only as the NumPy rule below does, from 128 channels with the batch split.)

    Without numba the transforms are NumPy passes and the rule is narrower:

    bench/conv_paths.py, one thread, AMD EPYC (AVX-512), ms of forward + all gradients, best
    other path vs F(2, 3) vs F(4, 3), batch x C_in x C_out x size:

        float32   128x16x16x32  35.7 / 80.8 / 58.0    64x128x128x16   176.8 / 142.5 / 105.6
                  128x64x64x16  98.0 / 115  / 88.5    32x128x128x32   337   / 265   / 179
                  128x64x64x8   27.4 / 32.9 / 27.1    8x256x256x14    64.9  / 43.2  / 46.4
                  64x32x64x14   22.4 / 27.2 / 23.1    16x256x256x28   506   / 317   / 221
                  8x512x512x7   65.9 / 77.9 / 79.2    1x512x512x7     11.6  / 26.5  / 59.0
        float64   128x16x16x32  70.9 / 112  / 82.1    64x32x64x14     41.0  / 38.9  / 35.5
                  128x64x64x8   55.6 / 50.5 / 38.8    128x64x64x16    197.6 / 185.1 / 131.2
                  32x128x128x32 714  / 506  / 375     8x512x512x7     152   / 180   / 202

    and on two BLAS threads (the tile transforms are single-threaded NumPy copies, the grid's
    GEMMs are 2.25x larger and scale better):

        float32   32x128x128x32 233 / 383 / 296     64x128x128x16 123 / 183 / 144
                  8x256x256x14  46.6 / 52.4 / 56.8
        float64   128x64x64x16  120 / 133 / 114     32x128x128x32 368 / 336 / 260

    and with the batch split between two threads, one BLAS thread each (cnnkit.functional.
    _parallel: the two threads share the memory bandwidth the tile transforms need):

        float32   32x128x128x32 201 / 229 / 157     64x128x128x16 98.3 / 91.3 / 86.5
                  8x256x256x14  40.0 / 32.6 / 40.7  16x256x256x28 265  / 195  / 148

    so float32 takes F(2, 3) from 128 channels in and out on outputs of at least 14 x 14 when
    BLAS runs one thread alone, from 256 when two or more threads split the batch (never
    F(4, 3): its rounding exceeds the float32 tolerance, see winograd.py), and float64 takes
    F(4, 3) from 32 channels on outputs of at least 8 x 8. A 7 x 7 output wastes 31% of the
    tiles' work on their padding and keeps the grid/im2col rule.

    Inference (under no_grad: the forward pass alone, its transformed weights cached) takes
    F(2, 3) more widely. bench/conv_paths.py-like forward timings, AMD EPYC (Zen 4), float32,
    ms, auto before this rule / F(2, 3), batch x C_in x C_out x size:

        two threads, batch split   16x128x128x28 23.2 / 20.0    16x512x512x7 21.7 / 17.8
                                   4x128x128x28  6.46 / 5.72    4x512x512x7  10.9 / 9.99
                                   16x64x64x56   25.1 / 30.2    16x64x64x28  6.80 / 8.38
        two BLAS threads, batch 1  1x256x256x14  5.20 / 1.99    1x128x128x28 2.61 / 4.19
        one thread, batch 1        1x512x512x7   3.14 / 4.41

    and within ResNet-18 at batch 1 on two BLAS threads (bench/onnx_speed.py), its three
    256 x 14 x 14 layers 6.28 -> 5.22 ms, its three 512 x 7 x 7 ones 6.57 -> 8.99 ms. So float32
    inference on several threads takes F(2, 3) when the batch is split between them from 128
    channels on outputs of at least 7 x 7, and when one image runs on several BLAS threads from
    256 channels on outputs of at least 14 x 14.
    """
    if not winograd.applies(weight_shape, groups, stride, dilation):
        return None
    channels, size = min(x_shape[1], weight_shape[0]), min(out_hw)
    inference = not _gradients_recorded()
    if dtype == np.float32 and inference and parts > 1 and channels >= 128 and size >= 7:
        return "winograd2"
    if dtype == np.float32 and winograd.fuses_epilogue(winograd.F2):
        return "winograd2" if size >= 14 and channels >= (32 if inference else 64) else None
    wide_enough = channels >= (128 if parts == 1 else 256)
    if dtype == np.float32 and wide_enough and size >= 14 and blas_threads == 1:
        return "winograd2"
    if dtype == np.float32 and blas_threads > 1 and inference and channels >= 256 and size >= 14:
        return "winograd2"
    if dtype == np.float64 and channels >= 32 and size >= 8:
        return "winograd4"
    return None


def _gradients_recorded() -> bool:
    """Whether cnnkit records this call for backward (not under cnnkit.no_grad())."""
    from cnnkit.nn.grad_mode import is_grad_enabled  # cnnkit.nn imports cnnkit.functional

    return is_grad_enabled()


def _tile_size(per_image_bytes: int, batch: int) -> int:
    return max(1, min(batch, COLUMN_BUDGET_BYTES // max(per_image_bytes, 1)))


def _im2col(xp, groups, kernel, stride, dilation, out_hw) -> np.ndarray:
    """Receptive fields of ``xp`` (N, C, Hp, Wp) as columns (groups, C/groups*kH*kW, N*Ho*Wo).

    Row (c, u, v) of group g holds xpad[n, g*Cg + c, i*s + u*d, j*s + v*d] for every (n, i, j),
    so one GEMM per group, w_g (C_out/groups, K) @ cols_g (K, N*Ho*Wo), is the whole convolution.
    """
    n, c, _, _ = xp.shape
    sn, sc, sh, sw = xp.strides
    cg = c // groups
    fields = as_strided(
        xp,
        shape=(groups, cg, kernel[0], kernel[1], n, out_hw[0], out_hw[1]),
        strides=(
            sc * cg,
            sc,
            sh * dilation[0],
            sw * dilation[1],
            sn,
            sh * stride[0],
            sw * stride[1],
        ),
        writeable=False,
    )
    return fields.reshape(groups, cg * kernel[0] * kernel[1], n * out_hw[0] * out_hw[1])


def _col2im(cols, padded_shape, kernel, stride, dilation, out_hw) -> np.ndarray:
    """Adjoint of :func:`_im2col`: sum every column entry back into its input position.

    ``cols`` is (C*kH*kW, N*Ho*Wo) as _im2col makes it; the sum is (C, N, Hp, Wp), channel-major
    like the columns, so that every slice-add reads and writes contiguous rows.
    """
    n, c, hp, wp = padded_shape
    if kernel == (1, 1) and stride == (1, 1):
        return cols.reshape(c, n, hp, wp)
    cols = cols.reshape(c, kernel[0], kernel[1], n, out_hw[0], out_hw[1])
    dxp = np.zeros((c, n, hp, wp), dtype=cols.dtype)
    for u in range(kernel[0]):
        rows = window_slice(u * dilation[0], stride[0], out_hw[0])
        for v in range(kernel[1]):
            columns = window_slice(v * dilation[1], stride[1], out_hw[1])
            dxp[:, :, rows, columns] += cols[:, u, v]
    return dxp


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    clamp: tuple[float, float] | None = None,
) -> tuple[np.ndarray, Conv2dCache]:
    """2-D cross-correlation of x (N, C_in, H, W) with weight (C_out, C_in/groups, kH, kW).

    ``padding`` is an int, a pair, 'valid', 'same' (TensorFlow's rule: output ceil(H/stride),
    the odd extra row/column at the bottom/right) or explicit ((top, bottom), (left, right)).
    Returns the output (N, C_out, H_out, W_out) and the cache for :func:`conv2d_backward`.

    ``clamp=(low, high)`` is an activation fused in for inference (cnnkit.nn.fusion): the
    output becomes min(max(y, low), high) by the rule of ReLU (0, inf) and Hardtanh, applied
    with the bias as each thread's images are written, one pass over the output. The cache is
    the convolution's alone: conv2d_backward knows nothing of the clamp.
    """
    _validate(x, weight, bias, groups)
    if clamp is not None:
        clamp = _clamp_bounds(clamp, x.dtype)
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    kernel = weight.shape[2:]
    pad = resolve_padding(padding, x.shape[2:], kernel, stride, dilation)
    padded_hw = (x.shape[2] + sum(pad[0]), x.shape[3] + sum(pad[1]))
    extent = tuple(dilation[i] * (kernel[i] - 1) + 1 for i in range(2))
    if extent[0] > padded_hw[0] or extent[1] > padded_hw[1]:
        raise ValueError(
            f"conv2d kernel {tuple(kernel)} with dilation {dilation} spans {extent}, larger than "
            f"the padded input {padded_hw} (input shape {x.shape}, padding {pad})"
        )
    out_hw = (
        output_size(x.shape[2], pad[0], kernel[0], stride[0], dilation[0]),
        output_size(x.shape[3], pad[1], kernel[1], stride[1], dilation[1]),
    )
    out = np.empty((x.shape[0], weight.shape[0], *out_hw), dtype=x.dtype)
    path, slices = _plan(x.shape, weight.shape, groups, stride, pad, dilation, out_hw, x.dtype)

    def forward_part(images: slice) -> ImagePart:
        saved, grid = _run_forward(
            path, x[images], weight, bias, clamp, stride, pad, dilation, groups, out_hw, out[images]
        )
        return ImagePart(images, saved, grid)

    tasks = [functools.partial(forward_part, images) for images in slices]
    parts = _parallel.run(tasks, batch=x.shape[0])
    has_bias = bias is not None
    cache = Conv2dCache(
        x.shape, weight, has_bias, pad, stride, dilation, groups, path, tuple(parts)
    )
    return out, cache


def _clamp_bounds(clamp, dtype) -> tuple:
    """(low, high) as scalars of ``dtype``, checked: two numbers with low <= high."""
    if not (isinstance(clamp, tuple) and len(clamp) == 2) or any(
        isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) for v in clamp
    ):
        raise TypeError(f"conv2d clamp must be a pair of numbers (low, high), got {clamp!r}")
    if not clamp[0] <= clamp[1]:
        raise ValueError(f"conv2d clamp must have low <= high, got {clamp!r}")
    return dtype.type(clamp[0]), dtype.type(clamp[1])


def _run_forward(path, x, weight, bias, clamp, stride, pad, dilation, groups, out_hw, out):
    """(what backward reads, the flat grid or None) of the kernels named by ``path``, which
    write the output into ``out``, plus ``bias`` unless it is None, clamped to ``clamp``
    unless it is None."""
    if path == "depthwise":  # the compiled loops add the bias as they write each plane
        x = np.ascontiguousarray(x)
        _depthwise_by_channels(x, weight, bias, clamp, stride, dilation, pad, out)
        return x, None
    if path in WINOGRAD_PATHS:
        transforms = winograd.TRANSFORMS[WINOGRAD_PATHS[path]]
        if winograd.fuses_epilogue(transforms):
            winograd.forward(x, pad, weight, transforms, out, bias, clamp)
            return x, None
    saved, grid = _run_unbiased(path, x, weight, stride, pad, dilation, groups, out_hw, out)
    _add_bias_and_clamp(out, bias, clamp)
    return saved, grid


def _add_bias_and_clamp(out, bias, clamp) -> None:
    """out += bias per channel, then out = min(max(out, low), high) for clamp = (low, high):
    one compiled pass where there is a clamp (the NumPy expressions of the layers one by one
    otherwise)."""
    if clamp is None:
        if bias is not None:
            out += bias[None, :, None, None]
        return
    if _compiled.ENABLED and out.flags.c_contiguous:
        shift = np.zeros(out.shape[1], out.dtype) if bias is None else bias
        flat = out.reshape(*out.shape[:2], -1)
        _compiled.bias_clamp_in_place(flat, shift, bias is not None, *clamp, True)
        return
    if bias is not None:
        out += bias[None, :, None, None]
    np.clip(out, *clamp, out=out)


def _depthwise_by_channels(x, weight, bias, clamp, stride, dilation, pad, out) -> None:
    """The compiled depthwise loops on x; one image's channels are split between the BLAS
    threads (a batch is split by images before this, see _plan; a plane's loops are the same
    either way). bench-like measurement, AMD EPYC (Zen 4), two threads, MobileNetV2's layers at
    batch 1, us one thread / split: 96 x 112 x 112 stride 2 766 / 480-657, 144 x 56 x 56 370 /
    282-308, its stride-2 twin 436 / 307, 960 x 7 x 7 260 / 213, 192 x 28 x 28 187 / 182 and
    32 x 112 x 112 284 / 292-299; each part needs MIN_PART_BYTES of input, as a convolution's."""
    biases = np.zeros(x.shape[1], dtype=x.dtype) if bias is None else bias
    geometry = (*stride, *dilation, pad[0][0], pad[1][0])
    bounds = (x.dtype.type(0), x.dtype.type(0), False) if clamp is None else (*clamp, True)
    parts = _parallel.parts_for(x.shape[1], x.nbytes) if x.shape[0] == 1 else [slice(None)]
    tasks = [
        functools.partial(
            _compiled.depthwise_forward,
            x[:, channels],
            weight[channels],
            biases[channels],
            bias is not None,
            *geometry,
            *bounds,
            out[:, channels],
        )
        for channels in parts
    ]
    _parallel.run(tasks)


def _run_unbiased(path, x, weight, stride, pad, dilation, groups, out_hw, out):
    """_run_forward's kernels without the bias, for every path but the compiled depthwise one."""
    if path == "reference":
        out[...] = reference.conv2d(x, weight, None, stride, pad, dilation, groups)
        return x, None
    if path == "grid":
        grid = _shifted_conv.grid_for(x.shape, weight.shape[2:], pad, dilation)
        _shifted_conv.forward(x, grid, weight, dilation, out)
        return x, grid
    if path in WINOGRAD_PATHS:
        winograd.forward(x, pad, weight, winograd.TRANSFORMS[WINOGRAD_PATHS[path]], out)
        return x, None
    if path == "pointwise":
        _pointwise_forward(_sampled(pad_hw(x, pad), stride), weight, out)
        return x, None
    if path == "padded" and _is_depthwise(x.shape, weight.shape, groups):
        saved = pad_hw(x, pad)
        _depthwise_forward(saved, weight, stride, dilation, out)
        return saved, None
    _grouped_forward(x, pad, weight, groups, stride, dilation, out)
    return x, None


def _backward(dout, cache: Conv2dCache, part: ImagePart, input_gradient: bool, into) -> tuple:
    """(dL/dx of the unpadded input or None, dL/dweight) of the images of ``part``, by the
    kernels the forward pass took. The kernels that write dL/dx image by image (grid,
    depthwise) write it into ``into`` when it is given, and return it; the others return
    their own array (or a view of it)."""
    weight, padding, saved = cache.weight, cache.padding, part.saved
    dx_part = None
    if cache.path == "reference":
        args = (saved, weight, cache.stride, padding, cache.dilation, cache.groups)
        dx_reference, dweight, _ = reference.conv2d_backward(dout, *args)
        dx_part = dx_reference if input_gradient else None
    elif cache.path == "grid":
        grid = part.grid
        if input_gradient:
            shape = (grid.images, weight.shape[1], grid.height, grid.width)
            dx_part = into if into is not None else np.empty(shape, dtype=dout.dtype)
        dweight = _shifted_conv.backward(dout, saved, grid, weight, cache.dilation, dx_part)
    elif cache.path in WINOGRAD_PATHS:
        transforms = winograd.TRANSFORMS[WINOGRAD_PATHS[cache.path]]
        dx_part, dweight = winograd.backward(
            dout, saved, padding, weight, transforms, input_gradient
        )
    elif cache.path == "pointwise":
        sampled = _sampled(pad_hw(saved, padding), cache.stride)
        dx_part, dweight = _pointwise_backward(dout, sampled, weight, input_gradient)
        (top, bottom), (left, right) = padding
        if dx_part is not None and (cache.stride != (1, 1) or top or bottom or left or right):
            n, c, h, w = saved.shape
            dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=dout.dtype)
            dxp[:, :, :: cache.stride[0], :: cache.stride[1]] = dx_part
            dx_part = unpad_hw(dxp, padding)
    elif cache.path == "depthwise":  # one pass computes both gradients
        dweight, grads = np.zeros_like(weight), np.ascontiguousarray(dout)
        geometry = (*cache.stride, *cache.dilation, padding[0][0], padding[1][0])
        target = into if into is not None else np.empty_like(saved)
        _compiled.depthwise_backward(grads, saved, weight, *geometry, target, dweight)
        dx_part = target if input_gradient else None
    else:
        out_hw = dout.shape[2:]
        if cache.path == "padded" and _is_depthwise(saved.shape, weight.shape, cache.groups):
            dxp, dweight = _depthwise_backward(
                dout, saved, weight, cache.stride, cache.dilation, out_hw
            )
        else:
            dxp, dweight = _grouped_backward(
                dout,
                saved,
                padding,
                weight,
                cache.groups,
                cache.stride,
                cache.dilation,
                out_hw,
                input_gradient,
            )
        dx_part = unpad_hw(dxp, padding) if input_gradient else None
    return dx_part, dweight


def conv2d_backward(
    dout: np.ndarray, cache: Conv2dCache, input_gradient: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients (dL/dx, dL/dweight, dL/dbias or None) given dL/dy of shape (N, C_out, Ho, Wo).

    ``input_gradient=False`` skips dL/dx (None is returned in its place), for a layer whose
    input is data, as PyTorch skips an input that does not require grad.
    """
    expected = (cache.input_shape[0], cache.weight.shape[0])
    if dout.ndim != 4 or dout.shape[:2] != expected:
        raise ValueError(
            f"conv2d_backward expected dout of shape (N={expected[0]}, C_out={expected[1]}, ...), "
            f"got {dout.shape}"
        )
    check_same_dtype("conv2d_backward", dout=dout, weight=cache.weight)
    dbias = dout.sum(axis=(0, 2, 3)) if cache.has_bias else None
    split = len(cache.parts) > 1
    # one part returns its kernels' dL/dx as it is; parts fill their slices of one array
    dx = np.empty(cache.input_shape, dtype=dout.dtype) if input_gradient and split else None

    def backward_part(part: ImagePart) -> tuple:
        into = None if dx is None else dx[part.images]
        part_dx, dweight = _backward(dout[part.images], cache, part, input_gradient, into)
        if into is not None and part_dx is not into:
            np.copyto(into, part_dx)
        return part_dx, dweight

    tasks = [functools.partial(backward_part, part) for part in cache.parts]
    results = _parallel.run(tasks, batch=cache.input_shape[0])
    dweight = results[0][1]
    for _, more in results[1:]:
        dweight += more
    return (dx if split else results[0][0]), dweight, dbias


def _columns(xp, groups, kernel, stride, dilation, out_hw) -> np.ndarray:
    """im2col of a tile into the column scratch buffer: (groups, C/groups*kH*kW, N*Ho*Wo)."""
    n, c = xp.shape[:2]
    rows, width = c * kernel[0] * kernel[1], n * out_hw[0] * out_hw[1]
    cols = scratch("conv columns", (groups, rows // groups, width), xp.dtype)
    if _compiled.ENABLED:
        _compiled.im2col(xp, *kernel, *stride, *dilation, cols.reshape(rows, width))
    else:
        np.copyto(cols, _im2col(xp, groups, kernel, stride, dilation, out_hw))
    return cols


def _add_columns_back(dcols, dxp, kernel, stride, dilation, out_hw) -> None:
    """col2im of a tile into dxp (N, C, Hp, Wp), compiled when available."""
    if _compiled.ENABLED:
        dxp[...] = 0
        _compiled.col2im(dcols.reshape(-1, dcols.shape[-1]), *kernel, *stride, *dilation, dxp)
        return
    summed = _col2im(dcols, dxp.shape, kernel, stride, dilation, out_hw)
    dxp[...] = summed.transpose(1, 0, 2, 3)


def _grouped_forward(x, padding, weight, groups, stride, dilation, out) -> None:
    """out (N, C_out, Ho, Wo) = the convolution of x, by im2col and GEMM, a tile of images at
    a time (each tile padded as it is reached)."""
    n, out_hw = x.shape[0], out.shape[2:]
    c_out, cg, kh, kw = weight.shape
    k = cg * kh * kw
    w_groups = weight.reshape(groups, c_out // groups, k)
    tile = _tile_size(groups * k * out_hw[0] * out_hw[1] * x.itemsize, n)
    for start in range(0, n, tile):
        stop = min(start + tile, n)
        xp = pad_hw(x[start:stop], padding)
        cols = _columns(xp, groups, (kh, kw), stride, dilation, out_hw)
        result = scratch("conv product", (groups, c_out // groups, cols.shape[2]), xp.dtype)
        np.matmul(w_groups, cols, out=result)
        out[start:stop] = result.reshape(c_out, stop - start, *out_hw).transpose(1, 0, 2, 3)


def _grouped_backward(
    dout, x, padding, weight, groups, stride, dilation, out_hw, input_gradient=True
):
    """(dL/d(padded x) or None, dL/dweight) of :func:`_grouped_forward`, tile by tile: dW from
    each tile's columns, dL/dx by col2im of W^T dY."""
    (top, bottom), (left, right) = padding
    n, c, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    k = cg * kh * kw
    w_groups = weight.reshape(groups, c_out // groups, k)
    dweight = np.zeros((groups, c_out // groups, k), dtype=weight.dtype)
    padded_shape = (n, c, h + top + bottom, w + left + right)
    dxp = np.empty(padded_shape, dtype=x.dtype) if input_gradient else None
    tile = _tile_size(groups * k * out_hw[0] * out_hw[1] * x.itemsize, n)
    for start in range(0, n, tile):
        stop = min(start + tile, n)
        xp = pad_hw(x[start:stop], padding)
        cols = _columns(xp, groups, (kh, kw), stride, dilation, out_hw)
        width = cols.shape[2]
        grads = scratch("conv upstream", (c_out, stop - start, *out_hw), xp.dtype)
        np.copyto(grads, dout[start:stop].transpose(1, 0, 2, 3))
        dout_groups = grads.reshape(groups, c_out // groups, width)
        dweight += np.matmul(dout_groups, cols.transpose(0, 2, 1))
        if dxp is None:
            continue
        dcols = scratch("conv product", (groups, k, width), xp.dtype)
        np.matmul(w_groups.transpose(0, 2, 1), dout_groups, out=dcols)
        _add_columns_back(dcols, dxp[start:stop], (kh, kw), stride, dilation, out_hw)
    return dxp, dweight.reshape(weight.shape)


def _pointwise_forward(xp, weight, out) -> None:
    """1x1 convolution, stride 1: y[n] = W (C_out, C_in) @ x[n] (C_in, H*W), one GEMM per image,
    into out (N, C_out, H, W)."""
    n, c, h, w = xp.shape
    product = out.reshape(n, weight.shape[0], h * w)
    np.matmul(weight.reshape(weight.shape[0], c), xp.reshape(n, c, h * w), out=product)


def _pointwise_backward(dout, xp, weight, input_gradient=True):
    """dx[n] = W^T @ dy[n] (None unless input_gradient);  dW = sum_n dy[n] @ x[n]^T (the 1x1
    case of the general backward)."""
    n, c, h, w = xp.shape
    c_out = weight.shape[0]
    grads = np.ascontiguousarray(dout).reshape(n, c_out, h * w)
    dx = np.matmul(weight.reshape(c_out, c).T, grads).reshape(xp.shape) if input_gradient else None
    dweight = np.matmul(grads, xp.reshape(n, c, h * w).transpose(0, 2, 1)).sum(axis=0)
    return dx, dweight.reshape(weight.shape)


def _depthwise_forward(xp, weight, stride, dilation, out) -> None:
    """out (N, C, Ho, Wo) = the depthwise convolution of the padded input, tap by tap."""
    n, c, out_hw = *xp.shape[:2], out.shape[2:]
    out[...] = 0
    for images, channels in cache_blocks(n, c, out_hw[0] * out_hw[1] * xp.itemsize):
        block, source = out[images, channels], xp[images, channels]
        taps = weight[channels, 0]
        for u in range(weight.shape[2]):
            rows = window_slice(u * dilation[0], stride[0], out_hw[0])
            for v in range(weight.shape[3]):
                columns = window_slice(v * dilation[1], stride[1], out_hw[1])
                block += source[:, :, rows, columns] * taps[None, :, u, v, None, None]


def _depthwise_backward(dout, xp, weight, stride, dilation, out_hw):
    n, c = xp.shape[:2]
    dxp = np.zeros_like(xp)
    dweight = np.zeros_like(weight)
    for images, channels in cache_blocks(n, c, out_hw[0] * out_hw[1] * xp.itemsize):
        grad, source, dsource = dout[images, channels], xp[images, channels], dxp[images, channels]
        taps, dtaps = weight[channels, 0], dweight[channels, 0]
        for u in range(weight.shape[2]):
            rows = window_slice(u * dilation[0], stride[0], out_hw[0])
            for v in range(weight.shape[3]):
                columns = window_slice(v * dilation[1], stride[1], out_hw[1])
                dsource[:, :, rows, columns] += grad * taps[None, :, u, v, None, None]
                dtaps[:, u, v] += np.einsum("nchw,nchw->c", grad, source[:, :, rows, columns])
    return dxp, dweight
