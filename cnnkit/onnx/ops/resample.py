"""Resize and Upsample as cnnkit.nn.Upsample (PyTorch's interpolation rules), DepthToSpace as
cnnkit.nn.PixelShuffle."""

from __future__ import annotations

import numpy as np

from cnnkit.functional.resample import LINEAR_MODES
from cnnkit.nn import PixelShuffle, Upsample
from cnnkit.onnx.layers.resample import ResizeTo
from cnnkit.onnx.registry import NodeContext, register

LINEAR_COORDINATES = {"half_pixel": False, "pytorch_half_pixel": False, "align_corners": True}
"""ONNX coordinate transformations of mode linear and the align_corners of torch's equal one
(half_pixel clamped at 0 is torch's align_corners=False; pytorch_half_pixel differs from it
only for an output axis of length 1, where it reads position 0 and torch the middle)."""


def _interpolation(ctx: NodeContext, mode: str, coordinates: str, nearest_mode: str):
    """(cnnkit mode without the rank prefix, align_corners) of an ONNX resize."""
    if mode == "nearest":
        if coordinates != "asymmetric" or nearest_mode != "floor":
            ctx.fail(
                f"nearest resizing with coordinate_transformation_mode {coordinates!r} and "
                f"nearest_mode {nearest_mode!r} is not torch's (asymmetric, floor)"
            )
        return "nearest", None
    if mode != "linear":
        ctx.fail(f"mode {mode!r} is not supported (nearest and linear are)")
    if coordinates not in LINEAR_COORDINATES:
        ctx.fail(
            f"linear resizing with coordinate_transformation_mode {coordinates!r} is not "
            f"supported ({', '.join(LINEAR_COORDINATES)} are)"
        )
    return "linear", LINEAR_COORDINATES[coordinates]


def _layer(ctx: NodeContext, mode: str, align_corners, scales, sizes, half_pixel=False):
    """Upsample for constant scales or sizes, ResizeTo for sizes known at run time."""
    if scales is None and sizes is None:
        return ResizeTo(mode, align_corners, half_pixel), (0, 3)
    rank = len(scales) if scales is not None else len(sizes)
    if rank - 2 not in (1, 2, 3):
        ctx.fail(f"only 3-D to 5-D input (1 to 3 spatial axes) is supported, got rank {rank}")
    if mode == "linear":
        mode = {v: k for k, v in LINEAR_MODES.items()}[rank - 2]
    if scales is not None:
        if any(s != 1 for s in scales[:2]):
            ctx.fail(f"scales {tuple(scales)} resize the batch or channel axis")
        factors = tuple(float(s) for s in scales[2:])
        return Upsample(scale_factor=factors, mode=mode, align_corners=align_corners), (0,)
    size = tuple(int(s) for s in sizes[2:])
    return Upsample(size=size, mode=mode, align_corners=align_corners), (0,)


@register("Resize")
def resize(ctx: NodeContext):
    """Resize (opset 11 on: roi, scales, sizes inputs) with torch's rules -> Upsample: nearest
    with asymmetric coordinates and floor rounding, linear with half_pixel, pytorch_half_pixel
    or align_corners coordinates; sizes computed at run time (F.interpolate(x, size=y.shape))
    -> ResizeTo."""
    for name, default in (("antialias", 0), ("exclude_outside", 0)):
        if ctx.attr(name, default) != default:
            ctx.fail(f"{name}={ctx.attr(name)} is not supported")
    if ctx.attr("axes") is not None:
        ctx.fail("the axes attribute is not supported")
    if ctx.opset < 11:
        scales_index, sizes_index = 1, None
        coordinates = "asymmetric"
    else:
        scales_index, sizes_index = 2, 3
        coordinates = ctx.attr("coordinate_transformation_mode", "half_pixel")
    mode, align_corners = _interpolation(
        ctx,
        ctx.attr("mode", "nearest"),
        coordinates,
        ctx.attr("nearest_mode", "round_prefer_floor"),
    )
    scales = None
    if ctx.has_input(scales_index):
        scales = ctx.require_constant(scales_index, "scales")
        scales = None if scales.size == 0 else scales
    sizes = ctx.constant(sizes_index) if sizes_index else None
    if scales is None and not (sizes_index and ctx.has_input(sizes_index)):
        ctx.fail("scales or sizes must be given")
    half_pixel = coordinates == "pytorch_half_pixel"
    if half_pixel and not _longer_than_one(scales, sizes):
        ctx.fail("pytorch_half_pixel reads position 0 for outputs of length 1, torch does not")
    return _layer(ctx, mode, align_corners, scales, sizes, half_pixel)


def _longer_than_one(scales, sizes) -> bool:
    """Whether no output axis can have length 1 from a longer input: sizes all above 1, or
    scales of at least 1 (an output of length 1 then has an input of length 1)."""
    if scales is not None:
        return bool(np.all(scales[2:] >= 1))
    return sizes is None or bool(np.all(sizes[2:] > 1))


@register("Upsample")
def upsample(ctx: NodeContext):
    """Upsample (opsets 7 to 9: scales attribute or input 1), nearest only (its linear mode uses
    asymmetric coordinates, which is not torch's) -> Upsample."""
    mode = ctx.attr("mode", "nearest")
    if mode != "nearest":
        ctx.fail(f"mode {mode!r} is not supported (only nearest, which is torch's)")
    scales = ctx.attr("scales")
    scales = np.asarray(scales) if scales is not None else ctx.require_constant(1, "scales")
    return _layer(ctx, "nearest", None, scales, None)


@register("DepthToSpace")
def depth_to_space(ctx: NodeContext):
    """DepthToSpace(blocksize) in CRD mode -> PixelShuffle (DCR orders the channels otherwise)."""
    if ctx.attr("mode", "DCR") != "CRD":
        ctx.fail("mode DCR is not supported (CRD is the pixel shuffle)")
    return PixelShuffle(int(ctx.attr("blocksize")))
