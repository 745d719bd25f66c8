"""Weight initialisation, following torch.nn.init; every function fills ``array`` in place.

Kaiming/He (He et al., 2015, "Delving Deep into Rectifiers"): std = gain / sqrt(fan).
Xavier/Glorot (Glorot & Bengio, 2010): std = gain * sqrt(2 / (fan_in + fan_out)).
A uniform draw with bound sqrt(3) * std has the same standard deviation.
"""

from __future__ import annotations

import math

import numpy as np


def fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field."""
    if len(shape) < 2:
        raise ValueError(
            f"fan in and fan out need an array of at least 2 dimensions, got shape {shape}"
        )
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a non-linearity (torch.nn.init.calculate_gain)."""
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(
        f"nonlinearity must be one of linear, conv2d, sigmoid, tanh, relu, leaky_relu, "
        f"got {nonlinearity!r}"
    )


def _fan(shape: tuple[int, ...], mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(array: np.ndarray, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Fill with U(low, high)."""
    array[...] = rng.uniform(low, high, size=array.shape)
    return array


def normal_(array: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Fill with N(0, std^2)."""
    array[...] = rng.normal(0.0, std, size=array.shape)
    return array


def kaiming_uniform_(
    array: np.ndarray,
    rng: np.random.Generator,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
) -> np.ndarray:
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al., 2015)."""
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(array.shape, mode))
    return uniform_(array, -bound, bound, rng)


def kaiming_normal_(
    array: np.ndarray,
    rng: np.random.Generator,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
) -> np.ndarray:
    """N(0, std^2) with std = gain / sqrt(fan) (He et al., 2015)."""
    return normal_(array, calculate_gain(nonlinearity, a) / math.sqrt(_fan(array.shape, mode)), rng)


def xavier_uniform_(array: np.ndarray, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = fan_in_and_fan_out(array.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(array, -bound, bound, rng)


def xavier_normal_(array: np.ndarray, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = fan_in_and_fan_out(array.shape)
    return normal_(array, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def torch_default_(weight: np.ndarray, bias: np.ndarray | None, rng: np.random.Generator) -> None:
    """PyTorch's Linear/Conv2d default: kaiming_uniform_(a=sqrt(5)), bias U(+-1/sqrt(fan_in))."""
    kaiming_uniform_(weight, rng, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(fan_in_and_fan_out(weight.shape)[0])
        uniform_(bias, -bound, bound, rng)
