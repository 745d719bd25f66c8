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
