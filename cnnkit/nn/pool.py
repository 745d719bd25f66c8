"""Pooling layers: torch.nn's MaxPool2d, AvgPool2d, MaxUnpool2d, AdaptiveAvgPool2d and
AdaptiveMaxPool2d, and Keras' global average pooling."""

from __future__ import annotations

import numpy as np

from cnnkit.functional import adaptive_pool as A
from cnnkit.functional import pool as F
from cnnkit.functional import unpool as U
from cnnkit.functional._args import pair
from cnnkit.nn.module import CachedModule


def _flag(value, owner: str, name: str) -> bool:
    """``value`` if it is a bool; raise TypeError naming the argument otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner} {name} must be a bool, got {value!r}")
    return bool(value)


class _Pool2d(CachedModule):
    batched_ndim = 4
    op = ""
    """The functional kernel's name, which its error messages carry."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        self.ceil_mode = _flag(ceil_mode, name, "ceil_mode")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{name} padding must be an int, a pair, 'same' or 'valid', got {padding!r}"
                )
            self.padding = padding
        else:
            self.padding = pair(padding, "padding", minimum=0)
            if any(self.padding[i] > self.kernel_size[i] // 2 for i in range(2)):
                raise ValueError(
                    f"{name} padding {self.padding} must be at most half the kernel size "
                    f"{self.kernel_size}"
                )

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(N, C, H_out, W_out) for an input of shape (N, C, H, W)."""
        if len(input_shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expected 4-D input (N, C, H, W), got {tuple(input_shape)}"
            )
        geometry = F.pool_geometry(
            input_shape,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.op,
        )
        return (*input_shape[:2], *geometry.out_hw)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}"


class MaxPool2d(_Pool2d):
    """Maximum over each dilated kH x kW window, padded with -inf (torch.nn.MaxPool2d).

    With ``return_indices`` the output is (out, indices), the flat position h*W + w of each
    maximum in its input plane (what MaxUnpool2d takes); backward takes dL/d(out) alone.

    Shape:
        (N, C, H, W) or (C, H, W) -> (..., H_out, W_out),
        H_out = floor((H + 2*padding - dilation*(kH - 1) - 1) / stride) + 1 (ceil with ceil_mode,
        less one if that window would start past the input and the left padding);
        'same' gives ceil(H / stride) with TensorFlow's padding (Keras' MaxPooling2D).
    """

    op = "max_pool2d"

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.return_indices = _flag(return_indices, "MaxPool2d", "return_indices")

    def forward(self, x: np.ndarray):
        self._check_input(x)
        out, self._cache = F.max_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.max_pool2d_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, dilation={self.dilation}, ceil_mode={self.ceil_mode}, "
            f"return_indices={self.return_indices}"
        )


class AvgPool2d(_Pool2d):
    """Mean over each kH x kW window (torch.nn.AvgPool2d).

    The divisor is ``divisor_override`` if given, else the window's size inside the input and
    the padding (count_include_pad=True) or inside the input alone (count_include_pad=False).

    Shape:
        (N, C, H, W) or (C, H, W) -> (..., H_out, W_out),
        H_out = floor((H + 2*padding - kH) / stride) + 1 (ceil with ceil_mode, less one if that
        window would start past the input and the left padding).
    """

    op = "avg_pool2d"

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override=None,
    ):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = _flag(count_include_pad, "AvgPool2d", "count_include_pad")
        self.divisor_override = F.check_divisor(divisor_override)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = F.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.avg_pool2d_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, ceil_mode={self.ceil_mode}, "
            f"count_include_pad={self.count_include_pad}, "
            f"divisor_override={self.divisor_override}"
        )


class MaxUnpool2d(CachedModule):
    """Partial inverse of MaxPool2d: each value written where its index points, zeros elsewhere
    (torch.nn.MaxUnpool2d).

    ``forward(input, indices, output_size=None)``; ``output_size`` (2 or 4 entries) picks among
    the sizes that pool to the input's, within stride of the default.

    Shape:
        (N, C, H, W) or (C, H, W) -> (..., H_out, W_out),
        H_out = (H - 1)*stride - 2*padding + kH.
    """

    batched_ndim = 4

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)

    def __call__(self, x, indices, output_size=None):
        if isinstance(indices, np.ndarray) and indices.ndim == 3:
            indices = indices[None]
        return super().__call__(x, indices, output_size)

    def forward(self, x: np.ndarray, indices: np.ndarray, output_size=None) -> np.ndarray:
        self._check_input(x)
        out, self._cache = U.max_unpool2d(
            x, indices, self.kernel_size, self.stride, self.padding, output_size
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return U.max_unpool2d_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AdaptivePool2d(CachedModule):
    batched_ndim = 4
    op = ""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = A.adaptive_output_size(output_size, type(self).__name__)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(N, C, out_h, out_w) for an input of shape (N, C, H, W); None keeps H or W."""
        if len(input_shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expected 4-D input (N, C, H, W), got {tuple(input_shape)}"
            )
        out = A.resolve_output_size(self.output_size, input_shape[2:], self.op)
        return (*input_shape[:2], *out)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """Average pooling to a fixed output size with PyTorch's bins (torch.nn.AdaptiveAvgPool2d).

    Shape:
        (N, C, H, W) or (C, H, W) -> (..., out_h, out_w) (a None entry of output_size keeps the
        input's size); bin i spans [floor(i*H/out), ceil((i+1)*H/out)).
    """

    op = "adaptive_avg_pool2d"

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = A.adaptive_avg_pool2d(x, self.output_size)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return A.adaptive_avg_pool2d_backward(dout, self._take_cache())


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """Max pooling to a fixed output size with PyTorch's bins (torch.nn.AdaptiveMaxPool2d).

    With ``return_indices`` the output is (out, indices), the flat position h*W + w of each
    maximum in its input plane; backward takes dL/d(out) alone.

    Shape:
        (N, C, H, W) or (C, H, W) -> (..., out_h, out_w) (a None entry of output_size keeps the
        input's size); bin i spans [floor(i*H/out), ceil((i+1)*H/out)).
    """

    op = "adaptive_max_pool2d"

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__(output_size)
        self.return_indices = _flag(return_indices, "AdaptiveMaxPool2d", "return_indices")

    def forward(self, x: np.ndarray):
        self._check_input(x)
        out, self._cache = A.adaptive_max_pool2d(x, self.output_size, self.return_indices)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return A.adaptive_max_pool2d_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, return_indices={self.return_indices}"


class GlobalAvgPool2d(CachedModule):
    """Mean over H and W of each channel (keras.layers.GlobalAveragePooling2D).

    Shape:
        (N, C, H, W) -> (N, C).
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, self._cache = A.global_avg_pool2d(x)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return A.global_avg_pool2d_backward(dout, self._take_cache())
