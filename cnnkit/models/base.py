"""What every model of the zoo shares: the Model base class and a factory for its layers.

A zoo model is a *named sequence*: its children, in the order they are assigned, are applied one
after another (forward) and undone in reverse (backward), like torch.nn.Sequential but with
meaningful attribute names ("conv1", "block4", "fc") so that state_dict keys match the PyTorch
or timm implementation the model follows.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from cnnkit.functional._args import pair
from cnnkit.nn import BatchNorm2d, Conv2d, MaxPool2d, Module, SeparableConv2d, Sequential
from cnnkit.nn.module import check_dtype


def make_rng(seed: int | None = 0, rng: np.random.Generator | None = None) -> np.random.Generator:
    """The generator that initialises a model: ``rng`` when given, else default_rng(seed)."""
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def check_choice(value, name: str, choices) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_positive_int(value, name: str) -> int:
    """``value`` as an int if it is a positive integer (bool excluded); raise otherwise."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_probability(value, name: str) -> float:
    """``value`` as a float in [0, 1); raise otherwise."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def input_hw(input_size, name: str = "input_size") -> tuple[int, int]:
    """``input_size`` (an int or an (H, W) pair) as an (H, W) pair of positive ints."""
    try:
        return pair(input_size, name)
    except TypeError as error:
        raise TypeError(f"{name} must be an int or an (H, W) pair, got {input_size!r}") from error


@dataclass
class LayerFactory:
    """Builds conv / separable conv / batch norm / max-pool layers with one network's options.

    Every layer it makes shares ``dtype`` and draws its initial weights from ``rng`` (so a whole
    model is reproducible from one seed); convolutions have no bias because a batch norm follows
    each of them (its beta plays the bias' role). ``bn_momentum`` uses PyTorch's convention
    (running = (1 - momentum) * running + momentum * batch); Keras' momentum m is 1 - m here.
    ``pool_padding`` is the padding of the 3x3 stride-2 max-pools: 'same' (TensorFlow's rule,
    extra row/column at the bottom/right) or an int (symmetric, as timm/PyTorch).
    """

    dtype: np.dtype = np.dtype(np.float32)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    pool_padding: str | int = "same"

    def __post_init__(self) -> None:
        self.dtype = check_dtype(self.dtype)
        if not isinstance(self.rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(self.rng).__name__}")
        if not isinstance(self.bn_eps, numbers.Real) or not self.bn_eps > 0:
            raise ValueError(f"bn_eps must be a positive number, got {self.bn_eps!r}")
        if not isinstance(self.bn_momentum, numbers.Real) or not 0 <= self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in [0, 1], got {self.bn_momentum!r}")
        if self.pool_padding not in ("same", 0, 1):
            raise ValueError(
                f"pool_padding must be 'same', 0 or 1 for a 3x3 max-pool, got {self.pool_padding!r}"
            )

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride=1, padding=0):
        """Conv2d without bias."""
        return Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            bias=False,
            dtype=self.dtype,
            rng=self.rng,
        )

    def separable(self, in_channels: int, out_channels: int) -> SeparableConv2d:
        """3x3 depthwise ('same', stride 1) then 1x1 pointwise, no bias, nothing in between."""
        return SeparableConv2d(
            in_channels, out_channels, 3, padding=1, bias=False, dtype=self.dtype, rng=self.rng
        )

    def bn(self, channels: int) -> BatchNorm2d:
        """BatchNorm2d with this network's eps and momentum."""
        return BatchNorm2d(channels, eps=self.bn_eps, momentum=self.bn_momentum, dtype=self.dtype)

    def pool(self, stride: int = 2) -> MaxPool2d:
        """3x3 max-pool with this network's padding rule."""
        return MaxPool2d(3, stride, padding=self.pool_padding)


class Model(Module):
    """A zoo model: a Module that knows its config, default input shape, output shapes and summary.

    Subclasses set ``default_input_shape`` (C, H, W) in ``__init__``; the registry sets
    ``config`` (the arguments that rebuild the model through ``cnnkit.models.get(**config)``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.default_input_shape: tuple[int, int, int] = (1, 28, 28)
        self.config: dict = {}

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Output shape for an input of shape (N, C, H, W) or (C, H, W), by shape inference."""
        from cnnkit.models.summary import trace

        return trace(self, input_shape).output_shape

    def summary(self, input_shape: tuple[int, ...] | None = None) -> str:
        """Keras-style table of layers, output shapes and parameter counts (see models.summary)."""
        from cnnkit.models.summary import summary

        return summary(self, self.default_input_shape if input_shape is None else input_shape)


class SequentialModel(Model):
    """A Model whose children run in assignment order (forward) and in reverse (backward)."""

    def add_modules(self, named: Mapping[str, Module]) -> None:
        """Assign each (name, module) as an attribute, in order."""
        for name, module in named.items():
            if name in self._modules:
                raise ValueError(f"{type(self).__name__} already has a child named {name!r}")
            setattr(self, name, module)

    forward = Sequential.forward
    backward = Sequential.backward
