"""Activations of modern CNNs (MobileNet, EfficientNet, ...), each forward beside its derivative.

Every forward returns (y, cache) with the input z as the cache, and every backward computes
dL/dz = A'(z) * dL/dy from it, with torch.nn's formulas and its choice at the kinks (the
hard-limited functions pass no gradient at their bounds). PReLU's slope is a parameter and
also returns dL/dslope.
"""

from __future__ import annotations

import math

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)
GELU_APPROXIMATIONS = ("none", "tanh")
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0, -z)).astype(z.dtype, copy=False)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Phi(z) = (1 + erf(z / sqrt(2))) / 2 in float64, by math.erf element by element."""
    return 0.5 * (1 + np.asarray(_erf(z / math.sqrt(2)), dtype=np.float64))


def hardtanh(z: np.ndarray, min_val: float = -1.0, max_val: float = 1.0) -> tuple:
    """y = min(max(z, min_val), max_val) (torch.nn.Hardtanh)."""
    return np.clip(z, min_val, max_val), (z, min_val, max_val)


def hardtanh_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dz = dL/dy where min_val < z < max_val, else 0."""
    z, low, high = cache
    return dout * ((z > low) & (z < high))


def relu6(z: np.ndarray) -> tuple:
    """y = min(max(z, 0), 6) (Howard et al., MobileNets, 2017)."""
    return hardtanh(z, 0.0, 6.0)


relu6_backward = hardtanh_backward


def hardsigmoid(z: np.ndarray) -> tuple:
    """y = relu6(z + 3) / 6 (Howard et al., Searching for MobileNetV3, 2019)."""
    return np.clip(z / 6 + 0.5, 0, 1).astype(z.dtype, copy=False), z


HARDSIGMOID_SLOPE = float(np.float32(1 / 6))
"""1/6 rounded to float32, the slope torch's hardsigmoid backward uses in every dtype."""


def hardsigmoid_backward(dout: np.ndarray, z: np.ndarray) -> np.ndarray:
    """dL/dz = dL/dy / 6 where -3 < z < 3, else 0."""
    return dout * (((z > -3) & (z < 3)) * z.dtype.type(HARDSIGMOID_SLOPE))


def hardswish(z: np.ndarray) -> tuple:
    """y = z * relu6(z + 3) / 6 (Howard et al., Searching for MobileNetV3, 2019)."""
    return z * np.clip(z + 3, 0, 6) / z.dtype.type(6), z


def hardswish_backward(dout: np.ndarray, z: np.ndarray) -> np.ndarray:
    """dL/dz = dL/dy * (0 if z <= -3, (2z + 3) / 6 if z < 3, else 1), as torch."""
    slope = np.where(z <= -3, 0, np.where(z < 3, z / 3 + 0.5, 1)).astype(z.dtype, copy=False)
    return dout * slope


def silu(z: np.ndarray) -> tuple:
    """y = z * sigmoid(z) (Elfwing et al., 2018; Swish, Ramachandran et al., 2017)."""
    return z * _sigmoid(z), z


def silu_backward(dout: np.ndarray, z: np.ndarray) -> np.ndarray:
    """dL/dz = dL/dy * s (1 + z (1 - s)), s = sigmoid(z)."""
    s = _sigmoid(z)
    return dout * (s * (1 + z * (1 - s)))


def gelu(z: np.ndarray, approximate: str = "none") -> tuple:
    """y = z Phi(z), Phi the normal CDF; 'tanh': 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))
    (Hendrycks & Gimpel, 2016)."""
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
    if approximate == "tanh":
        t = np.tanh(SQRT_2_OVER_PI * (z + 0.044715 * z**3))
        return 0.5 * z * (1 + t), (z, approximate)
    return z * _normal_cdf(z).astype(z.dtype, copy=False), (z, approximate)


def gelu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dz = dL/dy (Phi(z) + z phi(z)), or the derivative of the tanh form."""
    z, approximate = cache
    if approximate == "tanh":
        inner = SQRT_2_OVER_PI * (z + 0.044715 * z**3)
        t = np.tanh(inner)
        d_inner = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * z**2)
        return dout * (0.5 * (1 + t) + 0.5 * z * (1 - t**2) * d_inner)
    cdf = _normal_cdf(z)
    density = np.exp(-0.5 * z.astype(np.float64) ** 2) / math.sqrt(2 * math.pi)
    return dout * (cdf + z * density).astype(z.dtype, copy=False)


def elu(z: np.ndarray, alpha: float = 1.0) -> tuple:
    """y = z if z > 0 else alpha (exp(z) - 1) (Clevert et al., 2016)."""
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0))).astype(z.dtype), (z, alpha)


def elu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dz = dL/dy if z > 0 else dL/dy alpha exp(z)."""
    z, alpha = cache
    return dout * np.where(z > 0, 1, alpha * np.exp(np.minimum(z, 0))).astype(z.dtype)


def softplus(z: np.ndarray, beta: float = 1.0, threshold: float = 20.0) -> tuple:
    """y = log(1 + exp(beta z)) / beta, and y = z where beta z > threshold (torch.nn.Softplus)."""
    scaled = beta * z
    smooth = (np.logaddexp(0, scaled) / beta).astype(z.dtype, copy=False)
    return np.where(scaled > threshold, z, smooth), (z, beta, threshold)


def softplus_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dz = dL/dy sigmoid(beta z), and dL/dy where beta z > threshold."""
    z, beta, threshold = cache
    scaled = (beta * z).astype(z.dtype, copy=False)
    return dout * np.where(scaled > threshold, 1, _sigmoid(scaled)).astype(z.dtype)


def mish(z: np.ndarray) -> tuple:
    """y = z tanh(log(1 + exp(z))) (Misra, 2019)."""
    return z * np.tanh(np.logaddexp(0, z)).astype(z.dtype, copy=False), z


def mish_backward(dout: np.ndarray, z: np.ndarray) -> np.ndarray:
    """dL/dz = dL/dy (t + z sigmoid(z) (1 - t^2)), t = tanh(log(1 + exp(z)))."""
    t = np.tanh(np.logaddexp(0, z)).astype(z.dtype, copy=False)
    return dout * (t + z * _sigmoid(z) * (1 - t * t))


def _slope_shape(z: np.ndarray, weight: np.ndarray) -> tuple[int, ...]:
    if weight.size == 1:
        return (1,) * z.ndim
    if z.ndim < 2 or z.shape[1] != weight.size:
        raise ValueError(
            f"prelu expected input with {weight.size} channels on axis 1 (one per slope; an "
            f"input of fewer than 2 dimensions has one channel), got input shape {z.shape}"
        )
    shape = [1] * z.ndim
    shape[1] = weight.size
    return tuple(shape)


def prelu(z: np.ndarray, weight: np.ndarray) -> tuple:
    """y = z if z > 0 else a_c z, one learned slope a_c per channel or one shared (He et al.,
    2015)."""
    slope = weight.reshape(_slope_shape(z, weight))
    return np.where(z > 0, z, slope * z), (z, weight)


def prelu_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dz, dL/da): dL/dz = dL/dy (1 if z > 0 else a_c); dL/da_c = sum over z <= 0 of dy z."""
    z, weight = cache
    shape = _slope_shape(z, weight)
    negative = z <= 0
    dz = dout * np.where(negative, weight.reshape(shape), 1).astype(z.dtype)
    contributions = np.where(negative, dout * z, 0)
    axes = tuple(i for i, size in enumerate(shape) if size == 1 or weight.size == 1)
    dweight = contributions.sum(axis=axes).reshape(weight.shape).astype(weight.dtype)
    return dz, dweight
