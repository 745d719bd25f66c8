"""A small Xception for 28-32 px images, built from the same blocks as Xception (Chollet, 2017).

Layout (names as in :mod:`cnnkit.models.xception`): a 'same' 3x3 stem conv (conv1, bn1, act1),
entry blocks block1..block3 of 64/128/256 channels (each halving H and W with its max-pool and
shortcut conv), one middle block (block4, identity shortcut), a final ReLU (act_out, since a
block's output is a residual sum before any activation), global average pooling, dropout and a
linear classifier. At 28 px the feature maps go 28 -> 14 -> 7 -> 4; at 32 px 32 -> 16 -> 8 -> 4.

The entry and middle flows are the functions of :mod:`cnnkit.models.xception`, called with smaller
widths; only the stem (one stride-1 'same' conv instead of two valid ones, which would throw away
most of a 28 px image) differs. Batch norm uses PyTorch's defaults (eps 1e-5, momentum 0.1),
which suit short training runs better than Keras' slow momentum.
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
from cnnkit.models.xception import classifier_head, entry_flow, middle_flow
from cnnkit.nn import ReLU


class MiniXception(SequentialModel):
    """Xception (Chollet 2017) scaled down for 28-32 px inputs, from XceptionBlock and the flows."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size=28,
        stem_channels: int = 32,
        widths=(64, 128, 256),
        middle_blocks: int = 1,
        dropout: float = 0.2,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        pool_padding="same",
        dtype=np.float32,
        seed: int | None = 0,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        num_classes = check_positive_int(num_classes, "num_classes")
        in_channels = check_positive_int(in_channels, "in_channels")
        stem_channels = check_positive_int(stem_channels, "stem_channels")
        widths = tuple(check_positive_int(w, "widths entry") for w in widths)
        if not widths:
            raise ValueError("widths must name at least one entry block width, got ()")
        middle_blocks = int(middle_blocks)
        if middle_blocks < 0:
            raise ValueError(f"middle_blocks must be >= 0, got {middle_blocks!r}")
        dropout = check_probability(dropout, "dropout")
        height, wide = input_hw(input_size)
        layers = LayerFactory(dtype, make_rng(seed, rng), bn_eps, bn_momentum, pool_padding)
        self.default_input_shape = (in_channels, height, wide)

        entry, channels = entry_flow(
            layers, in_channels, stem=(stem_channels,), widths=widths, stem_stride=1, stem_padding=1
        )
        self.add_modules(entry)
        if middle_blocks:
            middle, channels = middle_flow(layers, channels, middle_blocks, len(widths) + 1)
            self.add_modules(middle)
        self.act_out = ReLU()
        self.add_modules(classifier_head(layers, channels, num_classes, True, "avg", dropout))
        self.num_features = channels


mini_xception = register("mini_xception")(MiniXception)
