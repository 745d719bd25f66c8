"""Resizing to a size read at run time (ONNX Resize whose sizes come from another tensor's
shape, as torch exports F.interpolate(x, size=y.shape[2:]))."""

from __future__ import annotations

import numpy as np

from cnnkit.functional import resample as F
from cnnkit.nn.module import CachedModule
from cnnkit.onnx.registry import UnsupportedOperatorError


class ResizeTo(CachedModule):
    """y = interpolate(x, size=sizes[2:], mode, align_corners), sizes being the node's fourth
    input (N, C, *spatial); mode "linear" is linear, bilinear or trilinear by the input's rank.
    With ``pytorch_half_pixel`` (ONNX's coordinates of that name), an output axis of length 1
    from a longer one is refused: there ONNX reads position 0 where torch reads the middle.
    The backward of cnnkit.functional.resample.interpolate."""

    def __init__(self, mode: str, align_corners: bool | None = None, pytorch_half_pixel=False):
        super().__init__()
        self.mode, self.align_corners = mode, align_corners
        self.pytorch_half_pixel = pytorch_half_pixel

    def forward(self, x: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        size = tuple(int(s) for s in sizes[2:])
        if self.pytorch_half_pixel and any(
            m == 1 < n for n, m in zip(x.shape[2:], size, strict=True)
        ):
            raise UnsupportedOperatorError(
                f"ResizeTo: pytorch_half_pixel resizing to {size} reads position 0 along the "
                "axes of length 1, which torch's interpolation does not"
            )
        mode = self.mode
        if mode == "linear":
            mode = {v: k for k, v in F.LINEAR_MODES.items()}.get(x.ndim - 2, mode)
        out, self._cache = F.interpolate(x, size, None, mode, self.align_corners)
        return out

    def backward(self, dout: np.ndarray):
        return F.interpolate_backward(dout, self._take_cache()), None

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, align_corners={self.align_corners}"
