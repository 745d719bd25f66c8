"""A boolean mask kept one bit per element, image by image: what ReLU keeps for backward.

A bool mask costs a byte per element, a quarter of the float32 activation it gates; the bits
cost an eighth of that (ResNet-20's nine ReLUs after the residual sums: 10.5 -> 1.3 MiB at
batch 128). Row n of the bits packs image n, x[n].ravel(), little-endian in each byte as
``np.packbits(..., bitorder="little")``; below two axes the whole array is one row. A batch of
images (three axes or more) has bits of shape (N, 1, bytes), so that
cnnkit.functional._parallel.by_images cuts them with the images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _rows(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, elements per row) of a mask of ``shape``."""
    if len(shape) >= 2:
        return shape[0], int(np.prod(shape[1:]))
    return 1, int(np.prod(shape))


def bits_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the bits of a mask of ``shape``: (rows, bytes), (N, 1, bytes) for images."""
    rows, per_row = _rows(shape)
    width = -(-per_row // 8)
    return (rows, 1, width) if len(shape) >= 3 else (rows, width)


@dataclass(frozen=True)
class BitMask:
    """A boolean array of ``shape`` stored as ``bits`` (see the module docstring)."""

    bits: np.ndarray
    shape: tuple[int, ...]

    @classmethod
    def pack(cls, mask: np.ndarray) -> BitMask:
        """The bits of a boolean (or 0/1) array."""
        rows = np.asarray(mask, dtype=bool).reshape(_rows(mask.shape))
        bits = np.packbits(rows, axis=1, bitorder="little")
        return cls(bits.reshape(bits_shape(mask.shape)), mask.shape)

    def unpack(self) -> np.ndarray:
        """The boolean array of ``shape``."""
        rows, per_row = _rows(self.shape)
        packed = self.bits.reshape(rows, -(-per_row // 8))
        flat = np.unpackbits(packed, axis=1, count=per_row, bitorder="little")
        return flat.view(bool).reshape(self.shape)
