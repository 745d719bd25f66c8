"""Resampling layers: torch.nn's Upsample, UpsamplingNearest2d, UpsamplingBilinear2d,
PixelShuffle, PixelUnshuffle and ChannelShuffle (the kernels are in cnnkit.functional.resample).
"""

from __future__ import annotations

import math

import numpy as np

from cnnkit.functional import resample as F
from cnnkit.nn.module import CachedModule


def _as_float(scale_factor):
    if scale_factor is None:
        return None
    if isinstance(scale_factor, (tuple, list)):
        return tuple(float(f) for f in scale_factor)
    return float(scale_factor)


class Upsample(CachedModule):
    """Nearest or (bi/tri)linear resizing of (N, C, *spatial) (torch.nn.Upsample).

    Shape:
        (N, C, *spatial) -> (N, C, *size), or out = floor(in * scale_factor) per spatial axis.
        Index rules: cnnkit.functional.resample (those of PyTorch's CPU kernels).
    """

    def __init__(
        self,
        size=None,
        scale_factor=None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ):
        super().__init__()
        F.check_interpolate_args(
            size, scale_factor, mode, align_corners, recompute_scale_factor, op=type(self).__name__
        )
        self.size = tuple(size) if isinstance(size, list) else size
        self.scale_factor = _as_float(scale_factor)
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._cache = F.interpolate(
            x,
            self.size,
            self.scale_factor,
            self.mode,
            self.align_corners,
            self.recompute_scale_factor,
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.interpolate_backward(dout, self._take_cache())

    def compute_output_shape(self, shape) -> tuple[int, ...]:
        """(N, C, *size), or floor(in * scale_factor) per spatial axis."""
        dims = len(shape) - 2
        if self.size is not None:
            sizes = self.size if isinstance(self.size, tuple) else (self.size,) * dims
        else:
            factors = self.scale_factor
            factors = factors if isinstance(factors, tuple) else (factors,) * dims
            sizes = tuple(math.floor(n * f) for n, f in zip(shape[2:], factors, strict=True))
        return (*shape[:2], *sizes)

    def extra_repr(self) -> str:
        if self.scale_factor is not None:
            info = f"scale_factor={self.scale_factor!r}"
        else:
            info = f"size={self.size!r}"
        return f"{info}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """Nearest-neighbour upsampling of (N, C, H, W) (torch.nn.UpsamplingNearest2d)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """Bilinear upsampling with align_corners=True (torch.nn.UpsamplingBilinear2d)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


class PixelShuffle(CachedModule):
    """Sub-pixel rearrangement (*, C r^2, H, W) -> (*, C, H r, W r) (Shi et al., 2016).

    Shape:
        (*, C * r^2, H, W) -> (*, C, H * r, W * r) with r = upscale_factor (torch.nn.PixelShuffle).
    """

    def __init__(self, upscale_factor: int):
        super().__init__()
        self.upscale_factor = F.check_factor(upscale_factor, "upscale_factor", "PixelShuffle")

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._cache = F.pixel_shuffle(x, self.upscale_factor)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.pixel_shuffle_backward(dout, self._take_cache())

    def compute_output_shape(self, shape) -> tuple[int, ...]:
        """(*, C / r^2, H r, W r)."""
        r = self.upscale_factor
        *batch, c, h, w = shape
        return (*batch, c // (r * r), h * r, w * r)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(CachedModule):
    """The inverse of PixelShuffle: (*, C, H r, W r) -> (*, C r^2, H, W) (torch.nn.PixelUnshuffle).

    Shape:
        (*, C, H * r, W * r) -> (*, C * r^2, H, W) with r = downscale_factor.
    """

    def __init__(self, downscale_factor: int):
        super().__init__()
        self.downscale_factor = F.check_factor(
            downscale_factor, "downscale_factor", "PixelUnshuffle"
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._cache = F.pixel_unshuffle(x, self.downscale_factor)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.pixel_unshuffle_backward(dout, self._take_cache())

    def compute_output_shape(self, shape) -> tuple[int, ...]:
        """(*, C r^2, H / r, W / r)."""
        r = self.downscale_factor
        *batch, c, h, w = shape
        return (*batch, c * r * r, h // r, w // r)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


class ChannelShuffle(CachedModule):
    """Interleave the channels of ``groups`` groups (Zhang et al., 2018, ShuffleNet).

    Shape:
        (N, C, *) -> (N, C, *); output channel j * groups + i is input channel i * C/groups + j
        (torch.nn.ChannelShuffle).
    """

    def __init__(self, groups: int):
        super().__init__()
        self.groups = F.check_factor(groups, "groups", "ChannelShuffle")

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._cache = F.channel_shuffle(x, self.groups)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.channel_shuffle_backward(dout, self._take_cache())

    def compute_output_shape(self, shape) -> tuple[int, ...]:
        """The input shape."""
        return tuple(shape)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
