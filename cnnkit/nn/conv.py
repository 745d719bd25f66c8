"""Convolution layers: Conv2d (torch.nn.Conv2d) and SeparableConv2d (Chollet, 2017)."""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional import conv as F
from cnnkit.functional._args import pair
from cnnkit.nn.init import torch_default_
from cnnkit.nn.module import CachedModule, Module, Parameter, check_dtype


def _positive_int(value, name: str, owner: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner} {name} must be a positive int, got {value!r}")
    return int(value)


def _check_padding(padding, owner: str):
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(
                f"{owner} padding must be an int, a pair, 'same' or 'valid', got {padding!r}"
            )
        return padding
    return pair(padding, "padding", minimum=0)


class Conv2d(CachedModule):
    """2-D convolution y = w * x + b over NCHW input (torch.nn.Conv2d).

    Shape:
        input (N, C_in, H, W) -> output (N, C_out, H_out, W_out) with
        H_out = floor((H + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1.
        'same' keeps ceil(H / stride) (TensorFlow's rule); 'valid' means no padding.

    weight: (C_out, C_in / groups, kH, kW); bias: (C_out,). Initialised as PyTorch does
    (kaiming_uniform_ with a = sqrt(5), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    An unbatched input (C_in, H, W) gives (C_out, H_out, W_out), as in torch.
    With ``input_gradient`` set to False, backward skips dL/dx and returns None (a first layer,
    whose input is data: see cnnkit.train.skip_input_gradient).
    """

    batched_ndim = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        dtype=np.float32,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = _positive_int(out_channels, "out_channels", "Conv2d")
        self.groups = _positive_int(groups, "groups", "Conv2d")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        self.padding = _check_padding(padding, "Conv2d")
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng() if rng is None else rng
        self.weight = Parameter(
            np.empty((out_channels, in_channels // groups, *self.kernel_size), dtype=self.dtype)
        )
        self.bias = Parameter(np.empty(out_channels, dtype=self.dtype)) if bias else None
        torch_default_(self.weight.data, None if self.bias is None else self.bias.data, rng)
        self.input_gradient = True

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(N, C_out, H_out, W_out) for an input of shape (N, C_in, H, W)."""
        return F.conv2d_output_shape(
            input_shape, self.weight.shape, self.stride, self.padding, self.dilation
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim == 4 and x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d expected input with {self.in_channels} channels, got {x.shape[1]} "
                f"(input shape {x.shape})"
            )
        bias = None if self.bias is None else self.bias.data
        out, self._cache = F.conv2d(
            x, self.weight.data, bias, self.stride, self.padding, self.dilation, self.groups
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        dx, dweight, dbias = F.conv2d_backward(dout, self._take_cache(), self.input_gradient)
        self.weight.grad += dweight
        if self.bias is not None:
            self.bias.grad += dbias
        return dx

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding not in ((0, 0), "valid"):
            text += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class SeparableConv2d(Module):
    """Depthwise separable convolution: a depthwise k x k conv then a pointwise 1 x 1 conv.

    No non-linearity sits between the two (Chollet, "Xception", 2017; keras.layers.SeparableConv2D).
    Parameters: C_in * depth_multiplier * kH * kW (+ C_out * C_in * depth_multiplier + C_out bias).

    Shape:
        input (N, C_in, H, W) -> output (N, C_out, H_out, W_out), H_out as for Conv2d.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        depth_multiplier: int = 1,
        bias: bool = True,
        dtype=np.float32,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier", "SeparableConv2d")
        rng = np.random.default_rng() if rng is None else rng
        self.depthwise = Conv2d(
            in_channels,
            in_channels * depth_multiplier,
            kernel_size,
            stride,
            padding,
            dilation,
            groups=in_channels,
            bias=False,
            dtype=dtype,
            rng=rng,
        )
        self.pointwise = Conv2d(
            in_channels * depth_multiplier, out_channels, 1, bias=bias, dtype=dtype, rng=rng
        )

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(N, C_out, H_out, W_out) for an input of shape (N, C_in, H, W)."""
        return self.pointwise.compute_output_shape(self.depthwise.compute_output_shape(input_shape))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.pointwise(self.depthwise(x))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self.depthwise.backward(self.pointwise.backward(dout))
