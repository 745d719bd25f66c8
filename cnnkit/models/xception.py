"""Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017).

The network of the paper's Figure 5, for 299 x 299 x 3 images, in three flows:

* entry flow: conv 32 3x3/2 valid - BN - ReLU, conv 64 3x3 valid - BN - ReLU, then three
  Xception blocks of 128, 256 and 728 channels, each [ReLU] SepConv-BN-ReLU-SepConv-BN,
  max-pool 3x3/2, plus a 1x1/2 conv + BN shortcut (the first block starts without the ReLU);
* middle flow: eight blocks of (ReLU - SepConv 728 - BN) x 3 with an identity shortcut;
* exit flow: a block ReLU-SepConv 728-BN-ReLU-SepConv 1024-BN-max-pool 3x3/2 with a 1x1/2 conv
  shortcut, then SepConv 1536-BN-ReLU, SepConv 2048-BN-ReLU, global average pooling,
  optional dropout and a linear classifier (logits; no softmax).

A separable conv is a 3x3 depthwise conv ('same', stride 1) followed by a 1x1 pointwise conv with
no non-linearity in between; no convolution has a bias (batch norm follows each). With 1000
classes the model has 22,855,952 trainable parameters, the paper's Table 3 figure (and Keras'),
plus 54,528 batch-norm running statistics.

Module names follow timm's ``legacy_xception`` (itself from Cadene's pretrainedmodels), so that
its checkpoints map one to one (see :func:`timm_key_map`):
``conv1 bn1 act1 conv2 bn2 act2 block1 ... block12 conv3 bn3 act3 conv4 bn4 act4 global_pool
dropout fc``; a block has ``rep`` (a Sequential laid out exactly as timm's, ReLU modules included
so the indices match) and, when its shape changes, ``skip`` (1x1 conv) and ``skipbn``. The only
difference: cnnkit's SeparableConv2d calls its depthwise conv ``depthwise``, timm ``conv1``.

Two presets (``flavor``) pin down what the paper leaves open:

* ``"keras"`` (keras.applications.Xception, the author's own code): batch-norm eps 1e-3 and
  momentum 0.01 in PyTorch's convention (Keras' 0.99), max-pools padded 'same' by TensorFlow's
  rule (asymmetric: the extra row/column at the bottom/right when the total padding is odd);
* ``"timm"`` (timm's legacy_xception): PyTorch's batch-norm defaults (eps 1e-5, momentum 0.1),
  max-pools with symmetric padding 1. The two give the same sizes (299 -> 149 -> 147 -> 74 -> 37
  -> 19 -> 10) but the 74 -> 37 pool windows sit one pixel apart.

``bn_eps``, ``bn_momentum`` and ``pool_padding`` override the preset.
"""

from __future__ import annotations

import numbers
from collections import OrderedDict

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
from cnnkit.models.layers import GlobalMaxPool2d
from cnnkit.models.registry import register
from cnnkit.nn import Dropout, GlobalAvgPool2d, Linear, Module, ReLU, SeparableConv2d, Sequential
from cnnkit.nn.fusion import run_chain

FLAVORS = {
    "keras": {"bn_eps": 1e-3, "bn_momentum": 0.01, "pool_padding": "same"},
    "timm": {"bn_eps": 1e-5, "bn_momentum": 0.1, "pool_padding": 1},
}

# Channel widths of Figure 5.
STEM = (32, 64)
ENTRY = (128, 256, 728)
EXIT_BLOCK = 1024
EXIT_SEPARABLE = (1536, 2048)


class XceptionBlock(Module):
    """One Xception module (Chollet 2017, Fig. 5): ``reps`` x ([ReLU] SepConv-BN), pool, + shortcut.

    ``rep`` holds, per repetition, ReLU - SeparableConv2d 3x3 - BatchNorm2d (the very first ReLU
    left out when ``start_with_relu`` is False), then a 3x3 max-pool of stride ``stride`` when
    stride > 1. The channel count grows at the first separable conv (``grow_first``) or at the last
    one (the exit block). The shortcut is the identity when the shape is kept, else ``skip``
    (1x1 conv of stride ``stride``) and ``skipbn``. Output: rep(x) + shortcut(x); the shortcut
    sees x before the leading ReLU, as in Keras and timm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        reps: int,
        stride: int = 1,
        start_with_relu: bool = True,
        grow_first: bool = True,
        layers: LayerFactory | None = None,
    ):
        super().__init__()
        in_channels = check_positive_int(in_channels, "XceptionBlock in_channels")
        out_channels = check_positive_int(out_channels, "XceptionBlock out_channels")
        reps = check_positive_int(reps, "XceptionBlock reps")
        stride = check_positive_int(stride, "XceptionBlock stride")
        layers = LayerFactory() if layers is None else layers
        self.in_channels, self.out_channels, self.reps, self.stride = (
            in_channels,
            out_channels,
            reps,
            stride,
        )
        self.start_with_relu, self.grow_first = bool(start_with_relu), bool(grow_first)

        if out_channels != in_channels or stride != 1:
            self.skip = layers.conv(in_channels, out_channels, 1, stride=stride)
            self.skipbn = layers.bn(out_channels)
        else:
            self.skip = self.skipbn = None

        rep = []
        for i in range(reps):
            if grow_first:
                cin, cout = (in_channels if i == 0 else out_channels), out_channels
            else:
                cin, cout = in_channels, (in_channels if i < reps - 1 else out_channels)
            if i > 0 or start_with_relu:
                rep.append(ReLU())
            rep += [layers.separable(cin, cout), layers.bn(cout)]
        if stride != 1:
            rep.append(layers.pool(stride))
        self.rep = Sequential(*rep)

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self.rep(x)
        shortcut = x if self.skip is None else run_chain((self.skip, self.skipbn), x)
        if out.shape != shortcut.shape:
            raise ValueError(
                f"XceptionBlock residual branch gives {out.shape} but the shortcut gives "
                f"{shortcut.shape} for input {x.shape}"
            )
        return out + shortcut

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = self.rep.backward(dout)
        if self.skip is None:
            return dx + dout
        return dx + self.skip.backward(self.skipbn.backward(dout))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, reps={self.reps}, stride={self.stride}, "
            f"start_with_relu={self.start_with_relu}, grow_first={self.grow_first}"
        )


def entry_flow(
    layers: LayerFactory,
    in_channels: int,
    stem=STEM,
    widths=ENTRY,
    stem_stride: int = 2,
    stem_padding=0,
) -> tuple[OrderedDict[str, Module], int]:
    """Entry flow (Chollet 2017, Fig. 5): stem convs conv1/bn1/act1, ..., then block1, block2, ...

    Returns the named modules, in order, and the number of channels they output. Each block has
    two separable convs and a stride-2 max-pool; the first block starts without a ReLU because
    the stem's ReLU just ran.
    """
    named: OrderedDict[str, Module] = OrderedDict()
    channels = in_channels
    for i, out in enumerate(stem, start=1):
        named[f"conv{i}"] = layers.conv(
            channels, out, 3, stride=stem_stride if i == 1 else 1, padding=stem_padding
        )
        named[f"bn{i}"] = layers.bn(out)
        named[f"act{i}"] = ReLU()
        channels = out
    for j, out in enumerate(widths, start=1):
        named[f"block{j}"] = XceptionBlock(
            channels, out, 2, stride=2, start_with_relu=j > 1, grow_first=True, layers=layers
        )
        channels = out
    return named, channels


def middle_flow(
    layers: LayerFactory, channels: int, blocks: int = 8, first_index: int = 4
) -> tuple[OrderedDict[str, Module], int]:
    """Middle flow (Chollet 2017, Fig. 5): ``blocks`` x [(ReLU-SepConv-BN) x 3 + identity]."""
    named: OrderedDict[str, Module] = OrderedDict()
    for k in range(blocks):
        named[f"block{first_index + k}"] = XceptionBlock(channels, channels, 3, 1, layers=layers)
    return named, channels


def exit_flow(
    layers: LayerFactory,
    in_channels: int,
    block_width: int = EXIT_BLOCK,
    separable=EXIT_SEPARABLE,
    block_index: int = 12,
    first_conv_index: int = 3,
) -> tuple[OrderedDict[str, Module], int]:
    """Exit flow (Chollet 2017, Fig. 5): a block growing last to ``block_width``, then SepConvs.

    Each separable conv after the block is followed by BN and ReLU (named conv3/bn3/act3, ...).
    """
    named: OrderedDict[str, Module] = OrderedDict()
    named[f"block{block_index}"] = XceptionBlock(
        in_channels, block_width, 2, stride=2, start_with_relu=True, grow_first=False, layers=layers
    )
    channels = block_width
    for i, out in enumerate(separable, start=first_conv_index):
        named[f"conv{i}"] = layers.separable(channels, out)
        named[f"bn{i}"] = layers.bn(out)
        named[f"act{i}"] = ReLU()
        channels = out
    return named, channels


def classifier_head(
    layers: LayerFactory,
    channels: int,
    num_classes: int,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
) -> OrderedDict[str, Module]:
    """global_pool ('avg' or 'max'), then, with ``include_top``, dropout (if > 0) and fc."""
    check_choice(pooling, "pooling", ("avg", "max", None))
    if include_top and pooling is None:
        raise ValueError(
            "pooling=None needs include_top=False (the classifier takes pooled features)"
        )
    named: OrderedDict[str, Module] = OrderedDict()
    if pooling is not None:
        named["global_pool"] = GlobalAvgPool2d() if pooling == "avg" else GlobalMaxPool2d()
    if include_top:
        if dropout > 0:
            named["dropout"] = Dropout(dropout, rng=layers.rng)
        named["fc"] = Linear(channels, num_classes, dtype=layers.dtype, rng=layers.rng)
    return named


def scale_width(channels: int, width: float) -> int:
    """round(channels * width), at least 1: the width multiplier's channel count."""
    return max(1, int(round(channels * width)))


class Xception(SequentialModel):
    """Xception (Chollet 2017, Fig. 5) for 299 x 299 x 3 images; see the module docstring.

    ``width`` multiplies every channel count and ``middle_blocks`` sets the middle flow's depth
    (8 in the paper), so that tests can build a tiny version of the same architecture. With
    ``include_top=False`` the output is the pooled features ((N, 2048) for ``pooling`` 'avg' or
    'max') or, with ``pooling=None``, the exit flow's feature map (N, 2048, 10, 10) at 299 px.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size=299,
        include_top: bool = True,
        pooling: str | None = "avg",
        dropout: float = 0.0,
        flavor: str = "keras",
        bn_eps: float | None = None,
        bn_momentum: float | None = None,
        pool_padding=None,
        width: float = 1.0,
        middle_blocks: int = 8,
        dtype=np.float32,
        seed: int | None = 0,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        check_choice(flavor, "flavor", tuple(FLAVORS))
        num_classes = check_positive_int(num_classes, "num_classes")
        in_channels = check_positive_int(in_channels, "in_channels")
        middle_blocks = check_positive_int(middle_blocks, "middle_blocks")
        dropout = check_probability(dropout, "dropout")
        if not isinstance(width, numbers.Real) or isinstance(width, bool) or not width > 0:
            raise ValueError(f"width must be a positive number, got {width!r}")
        height, wide = input_hw(input_size)
        if min(height, wide) < 7:
            raise ValueError(
                f"Xception input_size must be at least 7 (the two valid 3x3 stem convs), "
                f"got {input_size!r}"
            )
        preset = FLAVORS[flavor]
        layers = LayerFactory(
            dtype=dtype,
            rng=make_rng(seed, rng),
            bn_eps=preset["bn_eps"] if bn_eps is None else bn_eps,
            bn_momentum=preset["bn_momentum"] if bn_momentum is None else bn_momentum,
            pool_padding=preset["pool_padding"] if pool_padding is None else pool_padding,
        )
        self.flavor, self.width, self.middle_blocks = flavor, width, middle_blocks
        self.default_input_shape = (in_channels, height, wide)

        def scaled(values):
            return tuple(scale_width(c, width) for c in values)

        entry, channels = entry_flow(layers, in_channels, scaled(STEM), scaled(ENTRY))
        middle, channels = middle_flow(layers, channels, middle_blocks, first_index=len(ENTRY) + 1)
        exit_, channels = exit_flow(
            layers,
            channels,
            scale_width(EXIT_BLOCK, width),
            scaled(EXIT_SEPARABLE),
            block_index=len(ENTRY) + middle_blocks + 1,
            first_conv_index=len(STEM) + 1,
        )
        for named in (entry, middle, exit_):
            self.add_modules(named)
        self.add_modules(
            classifier_head(layers, channels, num_classes, include_top, pooling, dropout)
        )
        self.num_features = channels

    def extra_repr(self) -> str:
        return f"flavor={self.flavor!r}, width={self.width}, middle_blocks={self.middle_blocks}"


xception = register("xception")(Xception)


def timm_key_map(model: Module) -> dict[str, str]:
    """Map each state_dict key of ``model`` to timm's legacy_xception name for the same tensor.

    The names agree everywhere except inside separable convs, where timm calls the depthwise
    conv ``conv1`` ("block1.rep.0.depthwise.weight" <-> "block1.rep.0.conv1.weight").
    """
    renames = {}
    for prefix, module in model.named_modules():
        if isinstance(module, SeparableConv2d):
            renames[f"{prefix}.depthwise."] = f"{prefix}.conv1."
    mapping = {}
    for key in model.state_dict():
        mapping[key] = key
        for ours, theirs in renames.items():
            if key.startswith(ours):
                mapping[key] = theirs + key[len(ours) :]
    return mapping


def load_timm_state_dict(model: Module, state, strict: bool = True) -> None:
    """Load a timm legacy_xception state dict (arrays or tensors) into an Xception built alike.

    Build the model with ``flavor="timm"`` to reproduce timm's outputs.
    """
    inverse = {theirs: ours for ours, theirs in timm_key_map(model).items()}
    converted = {}
    for key, value in state.items():
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        converted[inverse.get(key, key)] = array
    model.load_state_dict(converted, strict=strict)
