"""Padding resolved at run time from the input size (ONNX auto_pad SAME_UPPER / SAME_LOWER)."""

from __future__ import annotations

import numpy as np

from cnnkit.functional._args import same_padding
from cnnkit.nn.module import CachedModule


class AutoPad2d(CachedModule):
    """Pad H and W so that a following window op of ``kernel``, ``stride``, ``dilation`` gives
    ceil(size / stride) outputs (ONNX auto_pad): the odd extra row/column goes at the end
    (SAME_UPPER, TensorFlow's 'same') or at the start (``lower``, SAME_LOWER).

    Shape: (N, C, H, W) -> (N, C, H + pad_h, W + pad_w); backward crops dL/dy back.
    """

    batched_ndim = 4

    def __init__(self, kernel, stride, dilation, lower: bool, value: float = 0.0):
        super().__init__()
        self.kernel, self.stride, self.dilation = tuple(kernel), tuple(stride), tuple(dilation)
        self.lower, self.value = lower, value

    def forward(self, x: np.ndarray) -> np.ndarray:
        pads = [
            same_padding(x.shape[2 + i], self.kernel[i], self.stride[i], self.dilation[i])
            for i in range(2)
        ]
        if self.lower:
            pads = [(after, before) for before, after in pads]
        self._cache = (x.shape, pads)
        return np.pad(x, ((0, 0), (0, 0), *pads), constant_values=self.value)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, ((top, _), (left, _)) = self._take_cache()
        return dout[:, :, top : top + shape[2], left : left + shape[3]]

    def extra_repr(self) -> str:
        side = "SAME_LOWER" if self.lower else "SAME_UPPER"
        return f"{side}, kernel={self.kernel}, stride={self.stride}, dilation={self.dilation}"


class ConstantPad(CachedModule):
    """Pad every axis with ``value`` by ONNX pads [b_0, ..., b_n, e_0, ..., e_n]; a negative
    entry crops (ONNX Pad, mode 'constant'). Backward crops dL/dy (and zero-fills the crops)."""

    def __init__(self, pads: tuple[int, ...], value: float = 0.0):
        super().__init__()
        self.pads, self.value = tuple(int(p) for p in pads), value

    def _pairs(self, ndim: int) -> list[tuple[int, int]]:
        if len(self.pads) != 2 * ndim:
            raise ValueError(f"Pad pads {self.pads} need 2 entries per axis of a {ndim}-D input")
        return list(zip(self.pads[:ndim], self.pads[ndim:], strict=True))

    def forward(self, x: np.ndarray) -> np.ndarray:
        pairs = self._pairs(x.ndim)
        crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(pairs))
        grow = [(max(b, 0), max(e, 0)) for b, e in pairs]
        self._cache = (x.shape, crop, grow)
        return np.pad(x[crop], grow, constant_values=self.value)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, crop, grow = self._take_cache()
        inner = tuple(slice(b, dout.shape[i] - e) for i, (b, e) in enumerate(grow))
        dx = np.zeros(shape, dtype=dout.dtype)
        dx[crop] = dout[inner]
        return dx

    def extra_repr(self) -> str:
        return f"pads={self.pads}, value={self.value}"
