"""Batch transforms (augmentation) on float32 (N, C, H, W) arrays, after torchvision.transforms.

Each transform is called as ``t(x, rng)`` with an explicit ``np.random.Generator``; random ones
draw one value per image from it, vectorised over the batch. Inputs are never modified in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnkit.data.loader import to_float_nchw


def _check_batch(x: np.ndarray, owner: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{owner} expects a float (N, C, H, W) batch, got {x.dtype} {x.shape}")
    return x


def _check_rng(rng: np.random.Generator | None, owner: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{owner} needs an explicit np.random.Generator rng, got {rng!r}")
    return rng


def _pair(value: int | Sequence[int], name: str, owner: str, minimum: int) -> tuple[int, int]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < minimum for v in pair):
        raise ValueError(f"{owner} {name} must be an int >= {minimum} or a pair, got {value!r}")
    return int(pair[0]), int(pair[1])


def _crop_windows(xpad: np.ndarray, top: np.ndarray, left: np.ndarray, h: int, w: int):
    """Image n of the result is ``xpad[n, :, top[n]:top[n]+h, left[n]:left[n]+w]``."""
    windows = sliding_window_view(xpad, (h, w), axis=(2, 3))  # (N, C, Hp-h+1, Wp-w+1, h, w)
    return windows[np.arange(len(xpad)), :, top, left]  # advanced indices first: (N, C, h, w)


class Compose:
    """Apply transforms in order, handing each the same Generator (torchvision Compose)."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class Normalize:
    """Per-channel ``(x - mean[c]) / std[c]`` (torchvision.transforms.Normalize)."""

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.std.shape != self.mean.shape:
            raise ValueError(
                f"Normalize mean and std must have one value per channel, got {mean!r} and {std!r}"
            )
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize std must be positive, got {std!r}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = _check_batch(x, "Normalize")
        if len(self.mean) not in (1, x.shape[1]):
            raise ValueError(
                f"Normalize has {len(self.mean)} channel statistics, got a batch with "
                f"{x.shape[1]} channels (shape {x.shape})"
            )
        mean = self.mean.astype(x.dtype).reshape(1, -1, 1, 1)
        std = self.std.astype(x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomCrop:
    """Zero-pad by ``padding``, then crop ``size`` at a random place per image (torchvision)."""

    def __init__(self, size: int | Sequence[int], padding: int | Sequence[int] = 0):
        self.size = _pair(size, "size", "RandomCrop", 1)
        self.padding = _pair(padding, "padding", "RandomCrop", 0)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = _check_batch(x, "RandomCrop")
        rng = _check_rng(rng, "RandomCrop")
        (h, w), (ph, pw) = self.size, self.padding
        hp, wp = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
        if h > hp or w > wp:
            raise ValueError(
                f"RandomCrop size {self.size} exceeds the padded image {hp}x{wp} (batch {x.shape})"
            )
        xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        top = rng.integers(0, hp - h + 1, size=len(x))
        left = rng.integers(0, wp - w + 1, size=len(x))
        return _crop_windows(xpad, top, left, h, w)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomShift:
    """Translate each image by whole pixels in [-max_shift, max_shift] per axis, filling zeros.

    The integer translation part of an affine augmentation (torchvision RandomAffine's
    ``translate``); the same as RandomCrop(size=(H, W), padding=max_shift).
    """

    def __init__(self, max_shift: int | Sequence[int]):
        self.max_shift = _pair(max_shift, "max_shift", "RandomShift", 0)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = _check_batch(x, "RandomShift")
        rng = _check_rng(rng, "RandomShift")
        sy, sx = self.max_shift
        xpad = np.pad(x, ((0, 0), (0, 0), (sy, sy), (sx, sx)))
        top = rng.integers(0, 2 * sy + 1, size=len(x))  # shift down by sy - top
        left = rng.integers(0, 2 * sx + 1, size=len(x))
        return _crop_windows(xpad, top, left, x.shape[2], x.shape[3])

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p`` (torchvision RandomHorizontalFlip)."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = _check_batch(x, "RandomHorizontalFlip")
        rng = _check_rng(rng, "RandomHorizontalFlip")
        flip = rng.random(len(x)) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def compute_mean_std(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std, on the [0, 1] scale the loader produces.

    Works on uint8 (N, H, W[, C]) or float (N, C, H, W) storage, ``chunk`` images at a time in
    float64, so CIFAR-size data never needs a full float copy.
    """
    total = total_sq = None
    count = 0
    for start in range(0, len(images), chunk):
        x = to_float_nchw(images[start : start + chunk]).astype(np.float64)
        s, sq = x.sum(axis=(0, 2, 3)), np.square(x).sum(axis=(0, 2, 3))
        total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if count == 0:
        raise ValueError("compute_mean_std needs at least one image")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)
