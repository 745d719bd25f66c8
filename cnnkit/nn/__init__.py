"""Layers with state: each holds its Parameters and calls the kernels in cnnkit.functional."""

from cnnkit.nn import init
from cnnkit.nn.activation import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from cnnkit.nn.container import Residual, Sequential
from cnnkit.nn.conv import Conv2d, SeparableConv2d
from cnnkit.nn.dropout import Dropout
from cnnkit.nn.linear import Flatten, Identity, Linear
from cnnkit.nn.loss import CrossEntropyLoss, MSELoss
from cnnkit.nn.module import Module, Parameter
from cnnkit.nn.norm import BatchNorm1d, BatchNorm2d
from cnnkit.nn.pool import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    GlobalAvgPool2d,
    MaxPool2d,
    MaxUnpool2d,
)

__all__ = [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "MaxUnpool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Residual",
    "SeparableConv2d",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "init",
]
