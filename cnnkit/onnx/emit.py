"""Emitters: for each cnnkit layer type, the ONNX nodes that compute what its forward computes.

An emitter gets the graph builder (whose ``scope`` is the layer's dotted name), the layer, the
ONNX names of its inputs, the plain input arrays and the output the layer computed (the static
shapes are known), and returns the name of the ONNX value holding the output. Parameters and
buffers become initializers named by their state_dict keys ("layer1.0.conv1.weight"), so that
cnnkit.onnx.load gives the same state_dict back. Shapes that depend on the batch size are never
written into the graph (Reshape uses 0 and -1), so the file runs at any batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cnnkit import nn
from cnnkit.functional._args import resolve_padding
from cnnkit.functional.adaptive_pool import resolve_output_size
from cnnkit.models.layers import GlobalMaxPool2d
from cnnkit.models.resnet import ZeroPadShortcut
from cnnkit.onnx.trace import ExportError, GraphBuilder

Emitter = Callable[[GraphBuilder, nn.Module, list, list, np.ndarray], str]
EMITTERS: dict[type, Emitter] = {}


def emits(*types: type) -> Callable[[Emitter], Emitter]:
    """Decorator registering an emitter for layers of ``types`` (and their subclasses)."""

    def decorator(emitter: Emitter) -> Emitter:
        for kind in types:
            EMITTERS[kind] = emitter
        return emitter

    return decorator


def emitter_for(module: nn.Module) -> Emitter | None:
    """The emitter of the nearest class in ``module``'s MRO that has one."""
    for kind in type(module).__mro__:
        if kind in EMITTERS:
            return EMITTERS[kind]
    return None


def _param(b: GraphBuilder, key: str, value: np.ndarray) -> str:
    return b.initializer(f"{b.scope}.{key}" if b.scope else key, value)


def _pads(padding) -> dict:
    """ONNX pads [top, left, bottom, right] or auto_pad for a cnnkit padding argument."""
    if padding == "same":
        return {"auto_pad": "SAME_UPPER"}
    if padding == "valid":
        return {"pads": [0, 0, 0, 0]}
    if isinstance(padding[0], (tuple, list)):
        (top, bottom), (left, right) = padding
        return {"pads": [top, left, bottom, right]}
    return {"pads": [padding[0], padding[1], padding[0], padding[1]]}


PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_node(b, name: str, left: int, right: int, top: int, bottom: int, mode: str, value=0.0):
    """Pad (ONNX pads [0, 0, top, left, 0, 0, bottom, right]) of an NCHW value."""
    pads = b.constant([0, 0, top, left, 0, 0, bottom, right], np.int64)
    inputs = [name, pads] + ([b.constant(value, b.dtype)] if mode == "constant" else [])
    return b.node("Pad", inputs, mode=PAD_MODES[mode])


def _weights(b, m, names) -> list[str]:
    inputs = [names[0], _param(b, "weight", m.weight.data)]
    if m.bias is not None:
        inputs.append(_param(b, "bias", m.bias.data))
    return inputs


def _conv_node(b, m, names, op: str, **attributes) -> str:
    """A Conv or ConvTranspose node of layer ``m``: its weight and bias as inputs, its
    kernel_shape, strides, dilations and group, then ``attributes`` (the padding)."""
    return b.node(
        op,
        _weights(b, m, names),
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        dilations=list(m.dilation),
        group=m.groups,
        **attributes,
    )


@emits(nn.Conv2d)
def conv2d(b, m, names, xs, y):
    """Conv2d -> Conv (weight, bias; pads or SAME_UPPER; strides, dilations, group); a
    padding_mode other than zeros pads first with Pad (reflect, edge, wrap)."""
    padding = m.padding
    if m.padding_mode != "zeros":
        (top, bottom), (left, right) = resolve_padding(
            padding, xs[0].shape[2:], m.kernel_size, m.stride, m.dilation
        )
        names = [_pad_node(b, names[0], left, right, top, bottom, m.padding_mode)]
        padding = (0, 0)
    return _conv_node(b, m, names, "Conv", **_pads(padding))


@emits(nn.Conv1d)
def conv1d(b, m, names, xs, y):
    """Conv1d -> Conv over one spatial axis (zeros padding only)."""
    if m.padding_mode != "zeros":
        raise ExportError(f"layer {b.scope!r}: Conv1d padding_mode {m.padding_mode!r}")
    if m.padding == "same":
        pads = {"auto_pad": "SAME_UPPER"}
    else:
        pads = {"pads": [0, 0] if m.padding == "valid" else [m.padding[0]] * 2}
    return _conv_node(b, m, names, "Conv", **pads)


@emits(nn.ConvTranspose2d)
def conv_transpose2d(b, m, names, xs, y):
    """ConvTranspose2d -> ConvTranspose (pads, output_padding, strides, dilations, group)."""
    ph, pw = m.padding
    return _conv_node(
        b, m, names, "ConvTranspose", pads=[ph, pw, ph, pw], output_padding=list(m.output_padding)
    )


@emits(nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.CircularPad2d)
def pad2d(b, m, names, xs, y):
    """The padding layers -> Pad (constant with its value, reflect, edge, wrap)."""
    return _pad_node(b, names[0], *m.padding, m.mode, m.value)


@emits(nn.BatchNorm1d, nn.BatchNorm2d)
def batch_norm(b, m, names, xs, y):
    """BatchNorm (eval) -> BatchNormalization with the running statistics."""
    if not m.track_running_stats:
        raise ExportError(f"layer {b.scope!r}: batch norm without running statistics")
    channels = m.num_features
    weight = m.weight.data if m.affine else np.ones(channels, m.dtype)
    bias = m.bias.data if m.affine else np.zeros(channels, m.dtype)
    inputs = [names[0], _param(b, "weight", weight), _param(b, "bias", bias)]
    inputs += [_param(b, k, m._buffers[k]) for k in ("running_mean", "running_var")]
    return b.node("BatchNormalization", inputs, epsilon=m.eps, momentum=1.0 - m.momentum)


@emits(nn.Linear)
def linear(b, m, names, xs, y):
    """Linear -> Gemm(x, W, b, transB=1)."""
    inputs = [names[0], _param(b, "weight", m.weight.data)]
    if m.bias is not None:
        inputs.append(_param(b, "bias", m.bias.data))
    return b.node("Gemm", inputs, transB=1)


SAME_NAME = {
    nn.ReLU: "Relu",
    nn.Sigmoid: "Sigmoid",
    nn.Tanh: "Tanh",
    nn.Hardswish: "HardSwish",
    nn.Softplus: "Softplus",
}


@emits(*SAME_NAME)
def activation(b, m, names, xs, y):
    """ReLU, Sigmoid, Tanh, Hardswish, Softplus (beta 1) -> Relu, Sigmoid, Tanh, HardSwish,
    Softplus (ONNX's has no threshold: above it, log(1 + exp(x)) equals x in float32)."""
    if isinstance(m, nn.Softplus) and m.beta != 1:
        raise ExportError(f"layer {b.scope!r}: Softplus with beta {m.beta} (ONNX has beta 1)")
    return b.node(SAME_NAME[type(m)], names)


@emits(nn.Hardtanh, nn.ReLU6)
def clip(b, m, names, xs, y):
    """ReLU6 / Hardtanh -> Clip(min, max)."""
    low, high = (0.0, 6.0) if isinstance(m, nn.ReLU6) else (m.min_val, m.max_val)
    return b.node("Clip", [names[0], b.constant(low, b.dtype), b.constant(high, b.dtype)])


@emits(nn.Hardsigmoid)
def hard_sigmoid(b, m, names, xs, y):
    """Hardsigmoid, relu6(x + 3) / 6 -> HardSigmoid(alpha=1/6, beta=1/2)."""
    return b.node("HardSigmoid", names, alpha=1 / 6, beta=0.5)


@emits(nn.SiLU)
def silu(b, m, names, xs, y):
    """SiLU -> x * Sigmoid(x)."""
    return b.node("Mul", [names[0], b.node("Sigmoid", names)])


@emits(nn.Mish)
def mish(b, m, names, xs, y):
    """Mish -> x * Tanh(Softplus(x)) (ONNX's Mish needs opset 18)."""
    return b.node("Mul", [names[0], b.node("Tanh", [b.node("Softplus", names)])])


@emits(nn.GELU)
def gelu(b, m, names, xs, y):
    """GELU -> Gelu(approximate) (opset 20)."""
    if b.opset < 20:
        raise ExportError(f"layer {b.scope!r}: GELU needs opset 20 or later, got {b.opset}")
    return b.node("Gelu", names, approximate=m.approximate)


@emits(nn.ELU)
def elu(b, m, names, xs, y):
    """ELU -> Elu(alpha)."""
    return b.node("Elu", names, alpha=m.alpha)


@emits(nn.PReLU)
def prelu(b, m, names, xs, y):
    """PReLU -> PRelu, the slope shaped (C, 1, ..., 1) to broadcast along axis 1."""
    slope = m.weight.data
    if slope.size > 1:
        slope = slope.reshape((slope.size,) + (1,) * (xs[0].ndim - 2))
    return b.node("PRelu", [names[0], _param(b, "weight", slope)])


@emits(nn.LeakyReLU)
def leaky_relu(b, m, names, xs, y):
    """LeakyReLU -> LeakyRelu(alpha)."""
    return b.node("LeakyRelu", names, alpha=m.negative_slope)


@emits(nn.Softmax)
def softmax(b, m, names, xs, y):
    """Softmax / LogSoftmax(dim) -> Softmax / LogSoftmax(axis) (opset 13 semantics)."""
    return b.node(type(m).__name__, names, axis=m.dim)


@emits(nn.MaxPool2d, nn.AvgPool2d)
def pool(b, m, names, xs, y):
    """MaxPool2d / AvgPool2d -> MaxPool (dilations) / AveragePool (count_include_pad), with
    ceil_mode; return_indices and divisor_override have no ONNX form."""
    attrs = {"kernel_shape": list(m.kernel_size), "strides": list(m.stride), **_pads(m.padding)}
    attrs["ceil_mode"] = int(m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        if m.divisor_override is not None:
            raise ExportError(f"layer {b.scope!r}: AvgPool2d divisor_override has no ONNX form")
        return b.node("AveragePool", names, count_include_pad=int(m.count_include_pad), **attrs)
    if m.return_indices:
        raise ExportError(f"layer {b.scope!r}: MaxPool2d return_indices is not exported")
    return b.node("MaxPool", names, dilations=list(m.dilation), **attrs)


@emits(nn.AdaptiveAvgPool2d)
def adaptive_avg_pool(b, m, names, xs, y):
    """AdaptiveAvgPool2d -> GlobalAveragePool (output 1x1) or AveragePool (sizes dividing)."""
    size = xs[0].shape[2:]
    wanted = resolve_output_size(m.output_size, size, "AdaptiveAvgPool2d")
    if wanted == (1, 1):
        return b.node("GlobalAveragePool", names)
    if any(size[i] % wanted[i] for i in range(2)):
        raise ExportError(
            f"layer {b.scope!r}: adaptive pooling of {size} to {wanted} has unequal bins"
        )
    kernel = [size[i] // wanted[i] for i in range(2)]
    return b.node("AveragePool", names, kernel_shape=kernel, strides=kernel)


@emits(nn.AdaptiveMaxPool2d)
def adaptive_max_pool(b, m, names, xs, y):
    """AdaptiveMaxPool2d to 1x1 -> GlobalMaxPool (other sizes have no ONNX operator)."""
    wanted = resolve_output_size(m.output_size, xs[0].shape[2:], "AdaptiveMaxPool2d")
    if m.return_indices or wanted != (1, 1):
        raise ExportError(f"layer {b.scope!r}: only AdaptiveMaxPool2d(1) without indices")
    return b.node("GlobalMaxPool", names)


@emits(nn.GlobalAvgPool2d, GlobalMaxPool2d)
def global_pool(b, m, names, xs, y):
    """GlobalAvgPool2d / GlobalMaxPool2d (N, C) -> GlobalAveragePool / GlobalMaxPool, Flatten."""
    op = "GlobalMaxPool" if isinstance(m, GlobalMaxPool2d) else "GlobalAveragePool"
    return b.node("Flatten", [b.node(op, names)], axis=1)


@emits(nn.Flatten)
def flatten(b, m, names, xs, y):
    """Flatten(start_dim) -> Flatten(axis=1), or Reshape to [0, ..., 0, -1]."""
    start = m.start_dim % xs[0].ndim
    if start == 1:
        return b.node("Flatten", names, axis=1)
    return b.node("Reshape", [names[0], b.constant([0] * start + [-1], np.int64)])


@emits(nn.Dropout, nn.Identity)
def identity(b, m, names, xs, y):
    """Dropout (eval) and Identity write no node: the output is the input."""
    return names[0]


@emits(ZeroPadShortcut)
def zero_pad_shortcut(b, m, names, xs, y):
    """ResNet option-A shortcut -> Slice every stride-th row and column, Pad the channels."""
    s = m.stride
    sliced = b.node(
        "Slice",
        [
            names[0],
            b.constant([0, 0], np.int64),
            b.constant([np.iinfo(np.int64).max] * 2, np.int64),
            b.constant([2, 3], np.int64),
            b.constant([s, s], np.int64),
        ],
    )
    after = m.out_channels - m.in_channels - m.before
    pads = b.constant([0, m.before, 0, 0, 0, after, 0, 0], np.int64)
    return b.node("Pad", [sliced, pads], mode="constant")


@emits(nn.Concat)
def concat(b, m, names, xs, y):
    """Concat -> Concat(axis)."""
    return b.node("Concat", names, axis=m.dim)


@emits(nn.Split)
def split(b, m, names, xs, y):
    """Split -> Split(axis) into the traced pieces' lengths."""
    axis = m.dim % xs[0].ndim
    sizes = b.constant([piece.shape[axis] for piece in y], np.int64)
    return b.node("Split", [names[0], sizes], outputs=len(y), axis=axis)


@emits(nn.Add)
def add(b, m, names, xs, y):
    """Add of n inputs -> n - 1 Add nodes."""
    total = names[0]
    for name in names[1:]:
        total = b.node("Add", [total, name])
    return total


@emits(nn.Upsample)
def upsample(b, m, names, xs, y):
    """Upsample -> Resize with torch's rules: nearest (asymmetric, floor) or linear (half_pixel,
    or align_corners); scales when a scale factor is used as given (without align_corners,
    where onnxruntime and torch floor the output length but ONNX's reference does not), else
    sizes: the input's batch and channels (Shape, Slice) and the traced spatial size."""
    if m.mode == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}
        attrs["nearest_mode"] = "floor"
    else:
        coordinates = "align_corners" if m.align_corners else "half_pixel"
        attrs = {"mode": "linear", "coordinate_transformation_mode": coordinates}
    dims = xs[0].ndim - 2
    if m.scale_factor is not None and not m.recompute_scale_factor and not m.align_corners:
        factors = m.scale_factor if isinstance(m.scale_factor, tuple) else (m.scale_factor,) * dims
        scales = b.constant([1.0, 1.0, *factors], np.float32)
        return b.node("Resize", [names[0], "", scales], **attrs)
    batch_channels = b.node(
        "Slice",
        [b.node("Shape", [names[0]]), b.constant([0], np.int64), b.constant([2], np.int64)],
    )
    sizes = b.node("Concat", [batch_channels, b.constant(y.shape[2:], np.int64)], axis=0)
    return b.node("Resize", [names[0], "", "", sizes], **attrs)


@emits(nn.PixelShuffle)
def pixel_shuffle(b, m, names, xs, y):
    """PixelShuffle -> DepthToSpace(blocksize, mode CRD)."""
    return b.node("DepthToSpace", names, blocksize=m.upscale_factor, mode="CRD")


def _regroup(b, name: str, split_shape, perm, final_shape) -> str:
    """Reshape to ``split_shape`` (batch kept as 0), Transpose by ``perm``, Reshape back."""
    grouped = b.node("Reshape", [name, b.constant([0, *split_shape[1:]], np.int64)])
    moved = b.node("Transpose", [grouped], perm=list(perm))
    return b.node("Reshape", [moved, b.constant([0, *final_shape[1:]], np.int64)])


@emits(nn.PixelUnshuffle)
def pixel_unshuffle(b, m, names, xs, y):
    """PixelUnshuffle -> Reshape (N, C, H/r, r, W/r, r), Transpose, Reshape (N, C r^2, H/r, W/r)."""
    n, c, h, w = xs[0].shape
    r = m.downscale_factor
    return _regroup(b, names[0], (n, c, h // r, r, w // r, r), (0, 1, 3, 5, 2, 4), y.shape)


@emits(nn.ChannelShuffle)
def channel_shuffle(b, m, names, xs, y):
    """ChannelShuffle -> Reshape (N, g, C/g, H, W), Transpose groups, Reshape (N, C, H, W)."""
    n, c, h, w = xs[0].shape
    g = m.groups
    return _regroup(b, names[0], (n, g, c // g, h, w), (0, 2, 1, 3, 4), y.shape)


def _affine(b, m, shape) -> list[str]:
    """The scale and bias initializers of a normalisation (ones and zeros without affine)."""
    weight = np.ones(shape, m.dtype) if m.weight is None else m.weight.data
    bias = np.zeros(shape, m.dtype) if m.bias is None else m.bias.data
    return [_param(b, "weight", weight), _param(b, "bias", bias)]


@emits(nn.GroupNorm)
def group_norm(b, m, names, xs, y):
    """GroupNorm -> GroupNormalization with per-channel scale and bias (opset 21)."""
    if b.opset < 21:
        raise ExportError(f"layer {b.scope!r}: GroupNorm needs opset 21 or later, got {b.opset}")
    inputs = [names[0], *_affine(b, m, (m.num_channels,))]
    return b.node("GroupNormalization", inputs, num_groups=m.num_groups, epsilon=m.eps)


@emits(nn.LayerNorm)
def layer_norm(b, m, names, xs, y):
    """LayerNorm -> LayerNormalization over the last len(normalized_shape) axes."""
    inputs = [names[0], *_affine(b, m, m.normalized_shape)]
    axis = -len(m.normalized_shape)
    return b.node("LayerNormalization", inputs, axis=axis, epsilon=m.eps)


@emits(nn.InstanceNorm1d, nn.InstanceNorm2d)
def instance_norm(b, m, names, xs, y):
    """InstanceNorm (statistics of each sample) -> InstanceNormalization."""
    if m.track_running_stats:
        raise ExportError(f"layer {b.scope!r}: instance norm with running statistics")
    inputs = [names[0], *_affine(b, m, (m.num_features,))]
    return b.node("InstanceNormalization", inputs, epsilon=m.eps)
