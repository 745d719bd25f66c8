"""A small VGG-style CNN (Simonyan & Zisserman, "Very Deep Convolutional Networks", ICLR 2015).

VGG's recipe at small scale: blocks of two 3x3 'same' convs, each followed by batch norm (Ioffe &
Szegedy 2015, which VGG predates) and ReLU, then a 2x2 max-pool; 32-64-128 channels by default.
Instead of VGG's three large fully connected layers, global average pooling (Lin et al., "Network
in Network", 2014), dropout and one linear layer, so the same weights work for 28 x 28 (28 -> 14
-> 7 -> 3) and 32 x 32 (32 -> 16 -> 8 -> 4) inputs. Names: ``features`` (a Sequential,
"features.0.weight" as torchvision's VGG), ``global_pool``, ``dropout``, ``fc``.
"""

from __future__ import annotations

import numpy as np

from cnnkit.models.base import (
    LayerFactory,
    SequentialModel,
    check_positive_int,
    check_probability,
    input_hw,
    make_rng,
)
from cnnkit.models.registry import register
from cnnkit.nn import Dropout, GlobalAvgPool2d, Linear, MaxPool2d, ReLU, Sequential


def conv_bn_relu(layers: LayerFactory, in_channels: int, out_channels: int) -> list:
    """3x3 'same' conv (no bias), BatchNorm2d, ReLU."""
    return [layers.conv(in_channels, out_channels, 3, padding=1), layers.bn(out_channels), ReLU()]


class VGGSmall(SequentialModel):
    """Small VGG (Simonyan & Zisserman 2015): [conv-BN-ReLU x 2, max-pool] per width, GAP, fc."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size=28,
        widths=(32, 64, 128),
        dropout: float = 0.5,
        dtype=np.float32,
        seed: int | None = 0,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        num_classes = check_positive_int(num_classes, "num_classes")
        in_channels = check_positive_int(in_channels, "in_channels")
        widths = tuple(check_positive_int(w, "widths entry") for w in widths)
        if not widths:
            raise ValueError("widths must hold at least one block width, got ()")
        dropout = check_probability(dropout, "dropout")
        height, wide = input_hw(input_size)
        if min(height, wide) < 2 ** len(widths):
            raise ValueError(
                f"input_size {input_size!r} is too small for {len(widths)} 2x2 max-pools "
                f"(needs at least {2 ** len(widths)})"
            )
        layers = LayerFactory(dtype=dtype, rng=make_rng(seed, rng))
        self.default_input_shape = (in_channels, height, wide)
        features, channels = [], in_channels
        for width in widths:
            features += conv_bn_relu(layers, channels, width) + conv_bn_relu(layers, width, width)
            features.append(MaxPool2d(2))
            channels = width
        self.features = Sequential(*features)
        self.global_pool = GlobalAvgPool2d()
        if dropout > 0:
            self.dropout = Dropout(dropout, rng=layers.rng)
        self.fc = Linear(channels, num_classes, dtype=layers.dtype, rng=layers.rng)


vgg_small = register("vgg_small")(VGGSmall)
