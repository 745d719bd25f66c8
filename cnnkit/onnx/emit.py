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


@emits(nn.Conv2d)
def conv2d(b, m, names, xs, y):
    """Conv2d -> Conv (weight, bias; pads or SAME_UPPER; strides, dilations, group)."""
    if getattr(m, "padding_mode", "zeros") != "zeros":
        raise ExportError(f"layer {b.scope!r}: padding_mode {m.padding_mode!r} is not exported")
    inputs = [names[0], _param(b, "weight", m.weight.data)]
    if m.bias is not None:
        inputs.append(_param(b, "bias", m.bias.data))
    return b.node(
        "Conv",
        inputs,
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        dilations=list(m.dilation),
        group=m.groups,
        **_pads(m.padding),
    )


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


@emits(nn.ReLU, nn.Sigmoid, nn.Tanh)
def activation(b, m, names, xs, y):
    """ReLU, Sigmoid, Tanh -> Relu, Sigmoid, Tanh."""
    return b.node({"ReLU": "Relu"}.get(type(m).__name__, type(m).__name__), names)


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
    """MaxPool2d / AvgPool2d -> MaxPool / AveragePool (count_include_pad)."""
    attrs = {"kernel_shape": list(m.kernel_size), "strides": list(m.stride), **_pads(m.padding)}
    if isinstance(m, nn.AvgPool2d):
        return b.node("AveragePool", names, count_include_pad=int(m.count_include_pad), **attrs)
    return b.node("MaxPool", names, **attrs)


@emits(nn.AdaptiveAvgPool2d)
def adaptive_avg_pool(b, m, names, xs, y):
    """AdaptiveAvgPool2d -> GlobalAveragePool (output 1x1) or AveragePool (sizes dividing)."""
    if m.output_size == (1, 1):
        return b.node("GlobalAveragePool", names)
    size = xs[0].shape[2:]
    if any(size[i] % m.output_size[i] for i in range(2)):
        raise ExportError(
            f"layer {b.scope!r}: adaptive pooling of {size} to {m.output_size} has unequal bins"
        )
    kernel = [size[i] // m.output_size[i] for i in range(2)]
    return b.node("AveragePool", names, kernel_shape=kernel, strides=kernel)


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
