"""Pooling layers: torch.nn's MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and Keras' global pooling."""

from __future__ import annotations

import numpy as np

from cnnkit.functional import pool as F
from cnnkit.functional._args import pair
from cnnkit.nn.module import CachedModule


class _Pool2d(CachedModule):
    batched_ndim = 4

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{type(self).__name__} padding must be an int, a pair, 'same' or 'valid', "
                    f"got {padding!r}"
                )
            self.padding = padding
        else:
            self.padding = pair(padding, "padding", minimum=0)
            if any(self.padding[i] > self.kernel_size[i] // 2 for i in range(2)):
                raise ValueError(
                    f"{type(self).__name__} padding {self.padding} must be at most half the "
                    f"kernel size {self.kernel_size}"
                )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}"


class MaxPool2d(_Pool2d):
    """Maximum over each kH x kW window, padded with -inf (torch.nn.MaxPool2d).

    Shape:
        (N, C, H, W) -> (N, C, H_out, W_out), H_out = floor((H + 2*padding - kH) / stride) + 1;
        'same' gives ceil(H / stride) with TensorFlow's padding (Keras' MaxPooling2D).
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.max_pool2d_backward(dout, self._take_cache())


class AvgPool2d(_Pool2d):
    """Mean over each kH x kW window (torch.nn.AvgPool2d).

    Shape:
        (N, C, H, W) -> (N, C, H_out, W_out), H_out = floor((H + 2*padding - kH) / stride) + 1.
    """

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = count_include_pad

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.avg_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.count_include_pad
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.avg_pool2d_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, count_include_pad={self.count_include_pad}"


class AdaptiveAvgPool2d(CachedModule):
    """Average pooling to a fixed output size with PyTorch's bins (torch.nn.AdaptiveAvgPool2d).

    Shape:
        (N, C, H, W) -> (N, C, *output_size); bin i spans [floor(i*H/out), ceil((i+1)*H/out)).
        A None in ``output_size`` keeps that input size.
    """

    batched_ndim = 4

    def __init__(self, output_size):
        super().__init__()
        self.output_size = F.adaptive_output_size(output_size)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.adaptive_avg_pool2d(x, self.output_size)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.adaptive_avg_pool2d_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(CachedModule):
    """Mean over H and W of each channel (keras.layers.GlobalAveragePooling2D).

    Shape:
        (N, C, H, W) -> (N, C).
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.global_avg_pool2d(x)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.global_avg_pool2d_backward(dout, self._take_cache())


class AdaptiveMaxPool2d(CachedModule):
    """Max pooling to a fixed output size with PyTorch's bins (torch.nn.AdaptiveMaxPool2d).

    Shape: as AdaptiveAvgPool2d. ``return_indices=True`` also returns the flat index into
    H * W of each maximum; backward takes the gradient of the pooled output only.
    """

    batched_ndim = 4

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        self.output_size = F.adaptive_output_size(output_size)
        self.return_indices = bool(return_indices)

    def forward(self, x: np.ndarray):
        self._check_input(x)
        out, indices, self._cache = F.adaptive_max_pool2d(x, self.output_size)
        return (out, indices) if self.return_indices else out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.adaptive_max_pool2d_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
