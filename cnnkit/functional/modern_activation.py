"""Activations of modern CNNs (MobileNet, EfficientNet, ...), each forward beside its derivative.

Every forward returns (y, cache) and every backward computes dL/dz = A'(z) * dL/dy from the
cache, with torch.nn's formulas and its choice at the kinks (the hard-limited functions pass no
gradient at their bounds). Where a derivative is one-sided the condition is written as torch's
kernel writes it (``z <= 0`` rather than ``not z > 0``), so a NaN input gets the gradient torch
gives it. PReLU's slope is a parameter and also returns dL/dslope.

``inplace=True`` (hardtanh, relu6 and hardsigmoid, whose backward needs only a mask) writes
the output into ``z``, as torch does.

Branches are selected by exact arithmetic (max/min, a product with a 0/1 mask) rather than by
np.where, which is 5-10 times slower on a mask whose values are unpredictable, as the signs of
activations are (softplus keeps np.where for its threshold test, which is almost always
false). For finite upstream gradients each result is the value torch's branch gives. NumPy has
no erf: GELU's is Cephes' rational approximation, vectorised (see ``_erf``).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from cnnkit.functional import _compiled
from cnnkit.functional._parallel import by_images
from cnnkit.functional.activation import _compiled_relu_takes, sigmoid

GELU_APPROXIMATIONS = ("none", "tanh")
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_GELU_KAPPA = 0.044715


def _bound(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"hardtanh {name} must be a number, got {value!r}")
    return float(value)


def hardtanh(
    z: np.ndarray, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> tuple:
    """y = min(max(z, min_val), max_val) (torch.nn.Hardtanh); the cache is the mask
    min_val < z < max_val. min_val <= max_val, as torch.nn.functional.hardtanh requires."""
    min_val, max_val = _bound(min_val, "min_val"), _bound(max_val, "max_val")
    if min_val > max_val:
        raise ValueError(
            f"hardtanh min_val must be <= max_val, got min_val={min_val!r}, max_val={max_val!r}"
        )
    if _compiled_relu_takes(z):
        inside = np.empty(z.shape, dtype=bool)
        low, high = z.dtype.type(min_val), z.dtype.type(max_val)
        if inplace:
            by_images(_compiled.hardtanh_in_place, z, low, high, inside)
            return z, inside
        out = np.empty_like(z)
        by_images(_compiled.hardtanh, z, low, high, out, inside)
        return out, inside
    inside = ~((z <= min_val) | (z >= max_val))
    return np.clip(z, min_val, max_val, out=z if inplace else None), inside


def hardtanh_backward(dout: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """dL/dz = dL/dy where min_val < z < max_val, else 0 (torch's choice at both bounds)."""
    return dout * inside


def relu6(z: np.ndarray, inplace: bool = False) -> tuple:
    """y = min(max(z, 0), 6) (Howard et al., MobileNets, 2017): hardtanh with bounds 0 and 6."""
    return hardtanh(z, 0.0, 6.0, inplace)


relu6_backward = hardtanh_backward


def hardsigmoid(z: np.ndarray, inplace: bool = False) -> tuple:
    """y = relu6(z + 3) / 6 (Howard et al., Searching for MobileNetV3, 2019); the cache is the
    mask -3 < z < 3."""
    inside = (z > -3) & (z < 3)
    out = np.add(z, 3, out=z if inplace else np.empty_like(z))
    np.clip(out, 0, 6, out=out)
    np.divide(out, 6, out=out)
    return out, inside


HARDSIGMOID_SLOPE = float(np.float32(1 / 6))
"""1/6 rounded to float32, the slope torch's hardsigmoid backward uses in every dtype."""


def hardsigmoid_backward(dout: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """dL/dz = dL/dy / 6 where -3 < z < 3, else 0."""
    return dout * (inside * np.result_type(dout).type(HARDSIGMOID_SLOPE))


def hardswish(z: np.ndarray) -> tuple:
    """y = z * relu6(z + 3) / 6 (Howard et al., Searching for MobileNetV3, 2019)."""
    return z * np.clip(z + 3, 0, 6) / z.dtype.type(6), z


def hardswish_backward(dout: np.ndarray, z: np.ndarray) -> np.ndarray:
    """dL/dz = dL/dy * (0 if z <= -3, (2z + 3) / 6 if z < 3, else 1, NaN included), as torch.

    The slope is (z / 3 + 1/2) * [-3 < z < 3] + [not z < 3], on z clipped to [-3, 3] by the
    NaN-ignoring fmax/fmin so that every product is finite.
    """
    below_three = z < 3
    clipped = np.fmin(np.fmax(z, -3), 3)
    return dout * ((clipped / 3 + 0.5) * (below_three & (z > -3)) + ~below_three)


def _softplus_and_sigmoid(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log(1 + exp(z)), 1 / (1 + exp(-z))) from one exp(-|z|): neither overflows."""
    e = np.exp(-np.abs(z))
    return np.maximum(z, 0) + np.log1p(e), np.maximum(e, z >= 0) / (1 + e)


def silu(z: np.ndarray) -> tuple:
    """y = z * sigmoid(z) (Elfwing et al., 2018; Swish, Ramachandran et al., 2017)."""
    s, _ = sigmoid(z)
    return z * s, (z, s)


def silu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dz = dL/dy * s (1 + z (1 - s)), s = sigmoid(z)."""
    z, s = cache
    return dout * s * (1 + z * (1 - s))


_ERF_SMALL = (
    (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
     7.00332514112805075473e3, 5.55923013010394962768e4),
    (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
     2.26290000613890934246e4, 4.92673942608635921086e4),
)  # fmt: skip
_ERFC_LARGE = (
    (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
     4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
     9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2),
    (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
     9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
     1.65666309194161350182e3, 5.57535340817727675546e2),
)  # fmt: skip


def _rational(z: np.ndarray, coefficients: tuple) -> np.ndarray:
    """P(z) / Q(z) by Horner's rule, coefficients highest power first (in place, no temporaries)."""
    numerator, denominator = (np.full_like(z, c[0]) for c in coefficients)
    for result, terms in zip((numerator, denominator), coefficients, strict=True):
        for c in terms[1:]:
            result *= z
            result += c
    return np.divide(numerator, denominator, out=numerator)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf(x) to about 1e-16 by Cephes' rational approximations (Moshier, ndtr.c), in x's dtype.

    erf(x) = x T(x^2) / U(x^2) for |x| < 1, and sign(x) (1 - exp(-x^2) P(|x|) / Q(|x|))
    beyond, where 1 - erf(x) < 1e-17 past |x| = 6 (so |x| is clipped at 8).
    """
    inner = np.clip(x, -1, 1)
    outer = np.minimum(np.abs(x), 8)
    small = inner * _rational(inner * inner, _ERF_SMALL)
    large = 1 - np.exp(-outer * outer) * _rational(outer, _ERFC_LARGE)
    near_zero = np.abs(x) < 1  # both branches are finite (or NaN for NaN): a 0/1 mask selects
    return near_zero * small + ~near_zero * np.copysign(large, x)


def check_gelu_approximate(approximate, op: str = "gelu") -> str:
    """Return ``approximate`` if it is 'none' or 'tanh'; raise ValueError otherwise."""
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"{op} approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate


def gelu(z: np.ndarray, approximate: str = "none") -> tuple:
    """y = z Phi(z), Phi the normal CDF; 'tanh': 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))
    (Hendrycks & Gimpel, 2016)."""
    if check_gelu_approximate(approximate) == "tanh":
        t = np.tanh(SQRT_2_OVER_PI * (z + _GELU_KAPPA * (z * z * z)))
        return 0.5 * z * (1 + t), (z, t, approximate)
    cdf = 0.5 * (1 + _erf(z * math.sqrt(0.5)))
    return z * cdf, (z, cdf, approximate)


def gelu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dz = dL/dy (Phi(z) + z phi(z)), phi the normal density, or the tanh form's slope."""
    z, value, approximate = cache
    if approximate == "tanh":
        inner_slope = SQRT_2_OVER_PI * (1 + 3 * _GELU_KAPPA * (z * z))
        return dout * (0.5 * (1 + value) + 0.5 * z * (1 - value * value) * inner_slope)
    return dout * (value + z * (_INV_SQRT_2PI * np.exp(-0.5 * (z * z))))


def elu(z: np.ndarray, alpha: float = 1.0) -> tuple:
    """y = z if z > 0 else alpha (exp(z) - 1) (Clevert et al., 2016).

    As alpha * expm1(min(z, 0)) + max(z, 0): one of the two terms is 0.
    """
    return np.expm1(np.minimum(z, 0)) * alpha + np.maximum(z, 0), (z, alpha)


def elu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dz = dL/dy alpha exp(z) for z <= 0 (alpha at z = 0, as torch), dL/dy above."""
    z, alpha = cache
    negative = z <= 0
    return dout * (negative * (alpha * np.exp(np.fmin(z, 0))) + ~negative)


def softplus(z: np.ndarray, beta: float = 1.0, threshold: float = 20.0) -> tuple:
    """y = log(1 + exp(beta z)) / beta, and y = z where beta z > threshold (torch.nn.Softplus);
    the cache is the slope sigmoid(beta z) (1 where linear)."""
    scaled = z * beta
    linear = scaled > threshold
    smooth, s = _softplus_and_sigmoid(scaled)
    return np.where(linear, z, smooth / beta), np.where(linear, 1, s)


def softplus_backward(dout: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """dL/dz = dL/dy sigmoid(beta z), and dL/dy where beta z > threshold."""
    return dout * slope


def mish(z: np.ndarray) -> tuple:
    """y = z tanh(log(1 + exp(z))) (Misra, 2019)."""
    softplus_z, s = _softplus_and_sigmoid(z)
    t = np.tanh(softplus_z)
    return z * t, (z, t, s)


def mish_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dz = dL/dy (t + z sigmoid(z) (1 - t^2)), t = tanh(log(1 + exp(z)))."""
    z, t, s = cache
    return dout * (t + z * s * (1 - t * t))


def _channel_slope(z: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """PReLU's weight shaped to broadcast along axis 1 of ``z`` (or a scalar for one slope)."""
    if weight.ndim != 1:
        raise ValueError(f"prelu expected a 1-D weight, got shape {weight.shape}")
    if weight.size == 1:
        return weight.reshape(())
    if z.ndim < 2 or z.shape[1] != weight.size:
        raise ValueError(
            f"prelu expected input with {weight.size} channels on axis 1 (one per slope; an "
            f"input of fewer than 2 dimensions has one channel), got input shape {z.shape}"
        )
    return weight.reshape((weight.size,) + (1,) * (z.ndim - 2))


def prelu(z: np.ndarray, weight: np.ndarray) -> tuple:
    """y = z if z > 0 else a_c z, one learned slope a_c per channel or one shared (He et al.,
    2015): max(z, 0) + a_c min(z, 0)."""
    if z.dtype != weight.dtype:
        raise TypeError(
            f"prelu expected input and weight of one dtype, got {z.dtype} and {weight.dtype}"
        )
    slope = _channel_slope(z, weight)
    return np.maximum(z, 0) + slope * np.minimum(z, 0), (z, slope, weight.shape)


def prelu_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dz, dL/da): dL/dz = dL/dy (1 if z > 0 else a_c); dL/da_c = sum over z <= 0 of dy z
    (the sum of min(z, 0) dy)."""
    z, slope, weight_shape = cache
    positive = z > 0
    dz = dout * (positive + ~positive * slope)
    axes = None if slope.ndim == 0 else (0, *range(2, z.ndim))
    return dz, np.sum(np.minimum(z, 0) * dout, axis=axes).reshape(weight_shape)
