"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 1998) and a small BN CNN for 8 x 8 digits.

LeNet-5 here: conv 6@5x5 - activation - pool 2 - conv 16@5x5 - activation - pool 2 - fc 120 -
fc 84 - fc classes. Modern defaults replace the paper's scaled tanh and trainable average
subsampling with ReLU and max-pooling (``activation="tanh", pooling="avg"`` gives the classic
flavour; the sparse C3 connection table and RBF output layer are not reproduced: C3 sees all six
maps and the output is a linear layer of logits).

Input sizes: the paper feeds 32 x 32 images (MNIST's 28 x 28 digits centred in a 32 x 32 field).
For inputs under 32 px the first conv pads by 2 ('same'), so 28 x 28 gives the paper's 5 x 5 x 16
map (61,706 parameters at 10 classes); when the map after the first pool is smaller than 10 the
second conv pads by 2 as well, so 8 x 8 digits give 16 x 2 x 2 features. ``input_size`` decides.
"""

from __future__ import annotations

import numpy as np

from cnnkit.models.base import (
    LayerFactory,
    SequentialModel,
    check_choice,
    check_positive_int,
    check_probability,
    input_hw,
    make_rng,
)
from cnnkit.models.registry import register
from cnnkit.models.vgg import conv_bn_relu
from cnnkit.nn import (
    AvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Tanh,
)


def lenet_paddings(size: int) -> tuple[int, int, int]:
    """(conv1 padding, conv2 padding, size of the final map) for one spatial side of LeNet-5."""
    pad1 = 2 if size < 32 else 0
    after_pool1 = (size + 2 * pad1 - 4) // 2
    pad2 = 0 if after_pool1 >= 10 else 2
    final = (after_pool1 + 2 * pad2 - 4) // 2
    return pad1, pad2, final


class LeNet5(SequentialModel):
    """LeNet-5 (LeCun et al. 1998), ReLU and max-pooling by default; see the module docstring."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size=28,
        activation: str = "relu",
        pooling: str = "max",
        dtype=np.float32,
        seed: int | None = 0,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        num_classes = check_positive_int(num_classes, "num_classes")
        in_channels = check_positive_int(in_channels, "in_channels")
        check_choice(activation, "activation", ("relu", "tanh"))
        check_choice(pooling, "pooling", ("max", "avg"))
        height, wide = input_hw(input_size)
        if min(height, wide) < 4:
            raise ValueError(f"LeNet5 input_size must be at least 4, got {input_size!r}")
        rng = make_rng(seed, rng)
        self.default_input_shape = (in_channels, height, wide)
        (pad1_h, pad2_h, out_h), (pad1_w, pad2_w, out_w) = (
            lenet_paddings(height),
            lenet_paddings(wide),
        )

        def act():
            return ReLU() if activation == "relu" else Tanh()

        def pool():
            return MaxPool2d(2) if pooling == "max" else AvgPool2d(2)

        self.features = Sequential(
            Conv2d(in_channels, 6, 5, padding=(pad1_h, pad1_w), dtype=dtype, rng=rng),
            act(),
            pool(),
            Conv2d(6, 16, 5, padding=(pad2_h, pad2_w), dtype=dtype, rng=rng),
            act(),
            pool(),
        )
        self.flatten = Flatten()
        self.classifier = Sequential(
            Linear(16 * out_h * out_w, 120, dtype=dtype, rng=rng),
            act(),
            Linear(120, 84, dtype=dtype, rng=rng),
            act(),
            Linear(84, num_classes, dtype=dtype, rng=rng),
        )


lenet5 = register("lenet5")(LeNet5)


class SmallCNN(SequentialModel):
    """Small CNN for 8 x 8 digits: 3x3 conv-BN-ReLU (Ioffe & Szegedy 2015), one max-pool, GAP.

    conv 32 - conv 32 - max-pool 2 - conv 64 - conv 64 (each 3x3 'same' + BN + ReLU), global
    average pooling, dropout, linear. 8 -> 8 -> 4 -> 4; works on 28 x 28 too (28 -> 14).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size=8,
        widths=(32, 64),
        dropout: float = 0.25,
        dtype=np.float32,
        seed: int | None = 0,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        num_classes = check_positive_int(num_classes, "num_classes")
        in_channels = check_positive_int(in_channels, "in_channels")
        first, second = (check_positive_int(w, "widths entry") for w in widths)
        dropout = check_probability(dropout, "dropout")
        height, wide = input_hw(input_size)
        if min(height, wide) < 2:
            raise ValueError(f"SmallCNN input_size must be at least 2, got {input_size!r}")
        layers = LayerFactory(dtype=dtype, rng=make_rng(seed, rng))
        self.default_input_shape = (in_channels, height, wide)
        self.features = Sequential(
            *conv_bn_relu(layers, in_channels, first),
            *conv_bn_relu(layers, first, first),
            MaxPool2d(2),
            *conv_bn_relu(layers, first, second),
            *conv_bn_relu(layers, second, second),
        )
        self.global_pool = GlobalAvgPool2d()
        if dropout > 0:
            self.dropout = Dropout(dropout, rng=layers.rng)
        self.fc = Linear(second, num_classes, dtype=layers.dtype, rng=layers.rng)


small_cnn = register("small_cnn")(SmallCNN)
