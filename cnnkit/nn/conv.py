"""Convolution layers: Conv1d, Conv2d (torch.nn) and SeparableConv2d (Chollet, 2017)."""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional import conv as F
from cnnkit.functional._args import check_4d, pair, resolve_padding
from cnnkit.functional.padding import pad2d, pad2d_backward
from cnnkit.nn.init import torch_default_
from cnnkit.nn.module import CachedModule, Module, Parameter, check_dtype

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _positive_int(value, name: str, owner: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner} {name} must be a positive int, got {value!r}")
    return int(value)


def init_weight_and_bias(module, shape: tuple[int, ...], bias: bool, dtype, rng) -> None:
    """Set ``module.dtype``, a weight of ``shape`` and (with ``bias``) a bias of
    ``module.out_channels`` values, both drawn by torch's default initialisation from ``rng``
    (a fresh generator when None)."""
    module.dtype = check_dtype(dtype)
    rng = np.random.default_rng() if rng is None else rng
    module.weight = Parameter(np.empty(shape, dtype=module.dtype))
    module.bias = Parameter(np.empty(module.out_channels, dtype=module.dtype)) if bias else None
    torch_default_(module.weight.data, None if module.bias is None else module.bias.data, rng)


def _channels(in_channels, out_channels, groups, owner: str) -> tuple[int, int, int]:
    """(in_channels, out_channels, groups), each a positive int, groups dividing both."""
    in_channels = _positive_int(in_channels, "in_channels", owner)
    out_channels = _positive_int(out_channels, "out_channels", owner)
    groups = _positive_int(groups, "groups", owner)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"{owner} groups={groups} must divide in_channels={in_channels} and "
            f"out_channels={out_channels}"
        )
    return in_channels, out_channels, groups


def _single(value, name: str, *, minimum: int = 1) -> tuple[int]:
    """``value`` (an int or a 1-tuple of ints, each at least ``minimum``) as a 1-tuple."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a 1-tuple of ints, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return (int(value),)


class _ConvNd(CachedModule):
    """What Conv1d and Conv2d share: arguments, parameters, padding_mode, conv2d's kernels.

    A 1-D convolution runs as a 2-D one on images of height 1 ((N, C, 1, L), kernel (1, k)).
    A ``padding_mode`` other than 'zeros' pads the input with pad2d in that mode and then
    convolves with no padding, as torch does.
    """

    dims = 2
    size_form = "a pair"

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
        padding_mode: str = "zeros",
        dtype=np.float32,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        owner = type(self).__name__
        self.in_channels, self.out_channels, self.groups = _channels(
            in_channels, out_channels, groups, owner
        )
        self.kernel_size = self._sizes(kernel_size, "kernel_size")
        self.stride = self._sizes(stride, "stride")
        self.dilation = self._sizes(dilation, "dilation")
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(
                f"{owner} padding must be an int, {self.size_form}, 'same' or 'valid', "
                f"got {padding!r}"
            )
        self.padding = padding if isinstance(padding, str) else self._sizes(padding, "padding", 0)
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"{owner} padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, "
                f"got {padding_mode!r}"
            )
        self.padding_mode = padding_mode
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        init_weight_and_bias(self, shape, bias, dtype, rng)
        self.input_gradient = True

    def _sizes(self, value, name: str, minimum: int = 1) -> tuple[int, ...]:
        return pair(value, name, minimum=minimum)

    def _plane(self, shape: tuple, height: int = 1) -> tuple:
        """A shape or argument of the 1-D layer with ``height`` put in before its last entry
        (a 2-D layer's: itself)."""
        return shape if self.dims == 2 else (*shape[:-1], height, shape[-1])

    def _arguments(self):
        """(kernel, stride, padding, dilation) of the 2-D convolution that this layer runs."""
        kernel, stride, dilation = (
            self._plane(v) for v in (self.kernel_size, self.stride, self.dilation)
        )
        padding = self.padding if isinstance(self.padding, str) else self._plane(self.padding, 0)
        return kernel, stride, padding, dilation

    def _unplane(self, shape: tuple) -> tuple:
        return (*shape[:2], *shape[4 - self.dims :])

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C_out, *spatial_out) for an input of shape (N, C_in, *spatial)."""
        kernel, stride, padding, dilation = self._arguments()
        plane_shape = self._plane(tuple(input_shape))
        weight_shape = (self.out_channels, self.in_channels // self.groups, *kernel)
        return self._unplane(
            F.conv2d_output_shape(plane_shape, weight_shape, stride, padding, dilation)
        )

    def _planes(self, x: np.ndarray) -> np.ndarray:
        """The input as (N, C, H, W) images (Conv1d: of height 1)."""
        check_4d(x, "conv2d")
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.convolve(x)

    def convolve(self, x: np.ndarray, clamp: tuple[float, float] | None = None) -> np.ndarray:
        """forward, with an activation's clamp (low, high) fused in where given (F.conv2d's
        ``clamp``; for inference: backward is the convolution's alone)."""
        self._check_input(x)
        planes = self._planes(x)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expected input with {self.in_channels} channels, got "
                f"{x.shape[1]} (input shape {x.shape})"
            )
        kernel, stride, padding, dilation = self._arguments()
        pad_cache = None
        if self.padding_mode != "zeros":
            explicit = resolve_padding(padding, planes.shape[2:], kernel, stride, dilation)
            (top, bottom), (left, right) = explicit
            planes, pad_cache = pad2d(planes, (left, right, top, bottom), self.padding_mode)
            padding = 0
        weight = self.weight.data.reshape(self.out_channels, -1, *kernel)
        bias = None if self.bias is None else self.bias.data
        out, conv_cache = F.conv2d(
            planes, weight, bias, stride, padding, dilation, self.groups, clamp=clamp
        )
        self._cache = (pad_cache, conv_cache)
        return out.reshape(self._unplane(out.shape))

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        pad_cache, conv_cache = self._take_cache()
        dout = np.asarray(dout)
        planes = dout.reshape(self._plane(dout.shape))
        dx, dweight, dbias = F.conv2d_backward(planes, conv_cache, self.input_gradient)
        self.weight.grad += dweight.reshape(self.weight.shape)
        if self.bias is not None:
            self.bias.grad += dbias
        if dx is None:
            return None
        if pad_cache is not None:
            dx = pad2d_backward(dx, pad_cache)
        return dx.reshape(self._unplane(dx.shape))

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding not in ((0,) * self.dims, "valid"):
            text += f", padding={self.padding!r}"
        if self.dilation != (1,) * self.dims:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode!r}"
        return text


class Conv1d(_ConvNd):
    """1-D convolution y = w * x + b over (N, C, L) input (torch.nn.Conv1d).

    Shape:
        input (N, C_in, L) -> output (N, C_out, L_out) with
        L_out = floor((L + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1.
        'same' keeps ceil(L / stride) (TensorFlow's rule); 'valid' means no padding.

    weight: (C_out, C_in / groups, k); bias: (C_out,), initialised as PyTorch does. It runs as
    Conv2d's kernels on images of height 1. An unbatched input (C_in, L) gives (C_out, L_out).
    ``padding_mode`` 'zeros', 'reflect', 'replicate' or 'circular' pads as torch does.
    """

    batched_ndim = 3
    dims = 1
    size_form = "a 1-tuple"

    def _sizes(self, value, name: str, minimum: int = 1) -> tuple[int, ...]:
        return _single(value, name, minimum=minimum)

    def _planes(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 3:
            raise ValueError(f"Conv1d expected 3-D input (N, C, L), got shape {x.shape}")
        return x[:, :, None, :]


class Conv2d(_ConvNd):
    """2-D convolution y = w * x + b over NCHW input (torch.nn.Conv2d).

    Shape:
        input (N, C_in, H, W) -> output (N, C_out, H_out, W_out) with
        H_out = floor((H + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1.
        'same' keeps ceil(H / stride) (TensorFlow's rule); 'valid' means no padding.

    weight: (C_out, C_in / groups, kH, kW); bias: (C_out,). Initialised as PyTorch does
    (kaiming_uniform_ with a = sqrt(5), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    An unbatched input (C_in, H, W) gives (C_out, H_out, W_out), as in torch.
    ``padding_mode`` 'zeros', 'reflect', 'replicate' or 'circular' pads as torch does (pad2d in
    that mode, then the convolution without padding).
    With ``input_gradient`` set to False, backward skips dL/dx and returns None (a first layer,
    whose input is data: see cnnkit.train.skip_input_gradient).
    """

    batched_ndim = 4


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
