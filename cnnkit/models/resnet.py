"""ResNets for CIFAR-sized images (He, Zhang, Ren & Sun, "Deep Residual Learning", CVPR 2016, 4.2).

ResNet-(6n+2): a 3x3 conv of 16 channels with BN and ReLU, three stages of n BasicBlocks with
16, 32 and 64 channels (the first block of stages 2 and 3 halves H and W with stride 2), global
average pooling and a linear classifier. ResNet-20 is n = 3.

Shortcuts. Where a block changes shape, the paper's CIFAR networks use option A: the identity,
subsampled by the stride and zero-padded with the missing channels (no parameters; 269,722
parameters for ResNet-20 on 3-channel input). cnnkit uses option B by default: a 1x1 conv of
stride 2 plus BN (torchvision's ``downsample``; 272,474 parameters for 3 input channels,
272,186 for 1), which trains as well and is what most re-implementations do. ``shortcut="A"``
gives the paper's variant.

Weights: convolutions He-normal (fan_out, as torchvision's ResNet), BN gamma 1 and beta 0, the
classifier PyTorch's default. Names follow torchvision (conv1, bn1, layer1.0.conv1, ...,
layer2.0.downsample.0, fc).
"""

from __future__ import annotations

import numpy as np

from cnnkit.models.base import (
    LayerFactory,
    SequentialModel,
    check_choice,
    check_positive_int,
    input_hw,
    make_rng,
)
from cnnkit.models.registry import register
from cnnkit.nn import Conv2d, GlobalAvgPool2d, Linear, Module, ReLU, Sequential, init
from cnnkit.nn.fusion import run_chain
from cnnkit.nn.module import CachedModule


class ZeroPadShortcut(CachedModule):
    """Option-A shortcut (He et al. 2016): x[:, :, ::stride, ::stride], zero-padded to out_channels.

    The new channels are split evenly before and after the old ones, as in the usual CIFAR
    re-implementations.

    Shape:
        (N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"ZeroPadShortcut out_channels ({out_channels}) must be >= in_channels "
                f"({in_channels})"
            )
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.before = (out_channels - in_channels) // 2

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(N, C_out, ceil(H / stride), ceil(W / stride))."""
        n, _, h, w = input_shape
        return n, self.out_channels, -(-h // self.stride), -(-w // self.stride)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ZeroPadShortcut expected input with {self.in_channels} channels, got shape "
                f"{x.shape}"
            )
        s = self.stride
        out = np.zeros(self.compute_output_shape(x.shape), dtype=x.dtype)
        out[:, self.before : self.before + self.in_channels] = x[:, :, ::s, ::s]
        self._cache = x.shape
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape = self._take_cache()
        s = self.stride
        dx = np.zeros(shape, dtype=dout.dtype)
        dx[:, :, ::s, ::s] = dout[:, self.before : self.before + self.in_channels]
        return dx

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class BasicBlock(Module):
    """Residual block of two 3x3 conv-BN layers, ReLU after the sum (He et al. 2016, Fig. 2).

    y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is the identity, or
    ``downsample`` (option B: 1x1 conv + BN; option A: :class:`ZeroPadShortcut`) when the
    stride or the channel count changes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        shortcut: str = "B",
        layers: LayerFactory | None = None,
    ):
        super().__init__()
        check_choice(shortcut, "shortcut", ("A", "B"))
        layers = LayerFactory() if layers is None else layers
        self.conv1 = layers.conv(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = layers.bn(out_channels)
        self.relu1 = ReLU()
        self.conv2 = layers.conv(out_channels, out_channels, 3, padding=1)
        self.bn2 = layers.bn(out_channels)
        if stride != 1 or in_channels != out_channels:
            if shortcut == "B":
                self.downsample = Sequential(
                    layers.conv(in_channels, out_channels, 1, stride=stride),
                    layers.bn(out_channels),
                )
            else:
                self.downsample = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.downsample = None
        self.relu2 = ReLU(inplace=True)  # on the block's own sum, as torchvision's

    def forward(self, x: np.ndarray) -> np.ndarray:
        # run_chain fuses bn1 + relu1 in training, each conv's batch norm into it under no_grad
        out = run_chain((self.conv1, self.bn1, self.relu1, self.conv2, self.bn2), x)
        out = out + (x if self.downsample is None else self.downsample(x))  # bn2's output freed
        return self.relu2(out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dsum = self.relu2.backward(dout)
        dx = self.conv1.backward(
            self.bn1.backward(self.relu1.backward(self.conv2.backward(self.bn2.backward(dsum))))
        )
        return dx + (dsum if self.downsample is None else self.downsample.backward(dsum))


class CifarResNet(SequentialModel):
    """ResNet-(6n+2) for CIFAR-sized images (He et al. 2016, section 4.2); see the module doc."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size=32,
        widths=(16, 32, 64),
        shortcut: str = "B",
        dtype=np.float32,
        seed: int | None = 0,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        depth = check_positive_int(depth, "depth")
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, ...), got {depth}")
        num_classes = check_positive_int(num_classes, "num_classes")
        in_channels = check_positive_int(in_channels, "in_channels")
        widths = tuple(check_positive_int(w, "widths entry") for w in widths)
        check_choice(shortcut, "shortcut", ("A", "B"))
        height, wide = input_hw(input_size)
        layers = LayerFactory(dtype=dtype, rng=make_rng(seed, rng))
        self.depth, self.shortcut = depth, shortcut
        self.default_input_shape = (in_channels, height, wide)
        blocks = (depth - 2) // 6

        self.conv1 = layers.conv(in_channels, widths[0], 3, padding=1)
        self.bn1 = layers.bn(widths[0])
        self.relu = ReLU()
        channels = widths[0]
        for stage, width in enumerate(widths, start=1):
            stage_blocks = []
            for b in range(blocks):
                stride = 2 if stage > 1 and b == 0 else 1
                stage_blocks.append(BasicBlock(channels, width, stride, shortcut, layers))
                channels = width
            setattr(self, f"layer{stage}", Sequential(*stage_blocks))
        self.global_pool = GlobalAvgPool2d()
        self.fc = Linear(channels, num_classes, dtype=layers.dtype, rng=layers.rng)
        for module in self.modules():
            if isinstance(module, Conv2d):
                init.kaiming_normal_(
                    module.weight.data, layers.rng, mode="fan_out", nonlinearity="relu"
                )

    def extra_repr(self) -> str:
        return f"depth={self.depth}, shortcut={self.shortcut!r}"


def _resnet_builder(depth: int):
    def build(
        num_classes: int = 10,
        in_channels: int = 3,
        input_size=32,
        shortcut: str = "B",
        dtype=np.float32,
        seed: int | None = 0,
        rng: np.random.Generator | None = None,
    ) -> CifarResNet:
        return CifarResNet(
            depth, num_classes, in_channels, input_size, (16, 32, 64), shortcut, dtype, seed, rng
        )

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = (
        f"ResNet-{depth} for CIFAR-sized images (He et al. 2016, section 4.2), "
        f"{(depth - 2) // 6} BasicBlocks per stage."
    )
    return register(f"resnet{depth}")(build)


resnet20 = _resnet_builder(20)
resnet32 = _resnet_builder(32)
resnet44 = _resnet_builder(44)
resnet56 = _resnet_builder(56)
