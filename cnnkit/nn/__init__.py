"""Layers with state: each holds its Parameters and calls the kernels in cnnkit.functional."""

from cnnkit.nn import init
from cnnkit.nn.activation import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from cnnkit.nn.container import Residual, Sequential
from cnnkit.nn.conv import Conv1d, Conv2d, SeparableConv2d
from cnnkit.nn.conv_transpose import ConvTranspose2d
from cnnkit.nn.dropout import Dropout, Dropout2d
from cnnkit.nn.graph import Graph
from cnnkit.nn.join import Add, Concat, Split
from cnnkit.nn.linear import Flatten, Identity, Linear
from cnnkit.nn.loss import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from cnnkit.nn.modern_activation import (
    ELU,
    GELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    Mish,
    PReLU,
    ReLU6,
    SiLU,
    Softplus,
)
from cnnkit.nn.module import Module, Parameter
from cnnkit.nn.norm import BatchNorm1d, BatchNorm2d
from cnnkit.nn.padding import (
    CircularPad2d,
    ConstantPad2d,
    ReflectionPad2d,
    ReplicationPad2d,
    ZeroPad2d,
)
from cnnkit.nn.pool import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    GlobalAvgPool2d,
    MaxPool2d,
    MaxUnpool2d,
)
from cnnkit.nn.resample import (
    ChannelShuffle,
    PixelShuffle,
    PixelUnshuffle,
    Upsample,
    UpsamplingBilinear2d,
    UpsamplingNearest2d,
)
from cnnkit.nn.sample_norm import GroupNorm, InstanceNorm1d, InstanceNorm2d, LayerNorm

__all__ = [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "Add",
    "AvgPool2d",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "ChannelShuffle",
    "CircularPad2d",
    "Concat",
    "ConstantPad2d",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "CrossEntropyLoss",
    "Dropout",
    "Dropout2d",
    "ELU",
    "Flatten",
    "GELU",
    "GlobalAvgPool2d",
    "Graph",
    "GroupNorm",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "HuberLoss",
    "Identity",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "Mish",
    "MaxUnpool2d",
    "Module",
    "NLLLoss",
    "PReLU",
    "Parameter",
    "PixelShuffle",
    "PixelUnshuffle",
    "ReLU",
    "ReLU6",
    "ReflectionPad2d",
    "ReplicationPad2d",
    "Residual",
    "SeparableConv2d",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "SmoothL1Loss",
    "Softmax",
    "Softplus",
    "Split",
    "Tanh",
    "Upsample",
    "UpsamplingBilinear2d",
    "UpsamplingNearest2d",
    "ZeroPad2d",
    "init",
]
