"""Argument normalisation and validation shared by the functional kernels."""

from __future__ import annotations

import numbers

import numpy as np

CACHE_BLOCK_BYTES = 512 * 2**10

Pair = tuple[int, int]
Padding2d = tuple[tuple[int, int], tuple[int, int]]


def pair(value, name: str, *, minimum: int = 1) -> Pair:
    """Return ``value`` as an (int, int) pair, each at least ``minimum``; raise otherwise."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        result = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
    ):
        result = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(result) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return result


def unit_interval(value, name: str) -> float:
    """Return ``value`` as a float if it is a real number in [0, 1]; raise ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def flag(value, name: str) -> bool:
    """Return ``value`` if it is a bool; raise TypeError otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after): output ceil(size/stride), extra at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding, spatial: Pair, kernel: Pair, stride: Pair, dilation: Pair
) -> Padding2d:
    """Turn int, pair, 'same', 'valid' or ((top, bottom), (left, right)) into explicit padding."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return tuple(
                same_padding(spatial[i], kernel[i], stride[i], dilation[i]) for i in range(2)
            )
        raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        explicit = tuple(pair(p, "padding", minimum=0) for p in padding)
        return explicit[0], explicit[1]
    ph, pw = pair(padding, "padding", minimum=0)
    return (ph, ph), (pw, pw)


def output_size(size: int, pad: tuple[int, int], kernel: int, stride: int, dilation: int) -> int:
    """floor((size + pad_before + pad_after - dilation*(kernel-1) - 1) / stride) + 1."""
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def check_4d(x, op: str) -> None:
    """Raise unless ``x`` is a floating-point NumPy array of shape (N, C, H, W)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op} expected a numpy.ndarray, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{op} expected 4-D input (N, C, H, W), got shape {x.shape}")
    check_float(x, op, "input")


def check_float(x: np.ndarray, op: str, what: str) -> None:
    """Raise unless ``x`` holds float32 or float64 values."""
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op} expected {what} of dtype float32 or float64, got {x.dtype}")


def check_same_dtype(op: str, **arrays) -> None:
    """Raise if the given arrays do not all share one dtype (no silent upcasting)."""
    present = {name: a for name, a in arrays.items() if a is not None}
    dtypes = {a.dtype for a in present.values()}
    if len(dtypes) > 1:
        described = ", ".join(f"{name} {a.dtype}" for name, a in present.items())
        raise TypeError(f"{op} expected all arrays to share one dtype, got {described}")


def pad_hw(x: np.ndarray, padding: Padding2d, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes of an NCHW array with ``value`` (a no-op without padding)."""
    (top, bottom), (left, right) = padding
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def unpad_hw(x: np.ndarray, padding: Padding2d) -> np.ndarray:
    """Remove the padding added by :func:`pad_hw` (a view)."""
    (top, bottom), (left, right) = padding
    return x[:, :, top : x.shape[2] - bottom, left : x.shape[3] - right]


def window_slice(offset: int, stride: int, count: int) -> slice:
    """Slice picking ``count`` positions from ``offset`` every ``stride`` (one kernel tap)."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def cache_blocks(n: int, c: int, plane_bytes: int):
    """(image slice, channel slice) blocks of about ``CACHE_BLOCK_BYTES`` of output each.

    Depthwise convolution and pooling make kH*kW passes over their data; on blocks that stay in
    the CPU cache those passes are not bound by memory bandwidth.
    """
    per_image = c * plane_bytes
    if per_image <= CACHE_BLOCK_BYTES:
        images = CACHE_BLOCK_BYTES // per_image
        for start in range(0, n, images):
            yield slice(start, start + images), slice(None)
        return
    channels = max(1, CACHE_BLOCK_BYTES // plane_bytes)
    for image in range(n):
        for start in range(0, c, channels):
            yield slice(image, image + 1), slice(start, start + channels)
