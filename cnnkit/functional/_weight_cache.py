"""Weights rearranged for a kernel (Winograd's U = G W G^T, the grid path's kernel-row matrix),
kept between inference calls while the weight's bits stay the same.

A kernel that needs its weight in another layout pays a transposing copy on every call; in
inference, where the weights never change, that copy can cost more than the convolution at
batch 1 (ResNet-18: about 16 ms of transposes per image on a 2-core AMD EPYC). Under
cnnkit.no_grad() the layout is therefore cached; a training step always makes it afresh, so an
optimizer's in-place update can never meet a stale layout there.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np

CACHE_BYTES = 256 * 2**20


class WeightCache:
    """Layouts of weights whose bits have not changed since the layout was made.

    The entry for (data pointer, shape, strides, dtype, purpose) holds a copy of the weight it
    was made from and is used only when the weight is bit-for-bit that copy (an integer
    comparison: NaN and -0.0 included), so a weight changed in place, or a new array at a freed
    array's address, gets a new layout. The comparison reads the weight twice, about a tenth of
    the cost of a transposing copy; entries are evicted least recently used beyond CACHE_BYTES.
    One lock serves the threads a batch is split between: the first makes the layout, the
    others find it.
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _bits(array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array).view(f"u{array.itemsize}")

    def get(
        self, weight: np.ndarray, purpose: Hashable, make: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """make(weight), from the cache when the weight's bits match the cached copy's."""
        key = (
            weight.__array_interface__["data"][0],
            weight.shape,
            weight.strides,
            weight.dtype.str,
            purpose,
        )
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and np.array_equal(entry[0], self._bits(weight)):
                self._entries.move_to_end(key)
                return entry[1]
            layout = make(weight)
            self._entries[key] = (self._bits(weight).copy(), layout)
            self._entries.move_to_end(key)
            while sum(a.nbytes + b.nbytes for a, b in self._entries.values()) > CACHE_BYTES:
                self._entries.popitem(last=False)
            return layout

    def clear(self) -> None:
        """Forget every cached layout."""
        with self._lock:
            self._entries.clear()


CACHE = WeightCache()


def layout(
    weight: np.ndarray, purpose: Hashable, make: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """make(weight): cached under cnnkit.no_grad() (see WeightCache), made afresh otherwise."""
    from cnnkit.nn.grad_mode import is_grad_enabled  # cnnkit.nn imports cnnkit.functional

    if is_grad_enabled():
        return make(weight)
    return CACHE.get(weight, purpose, make)
