"""Layers with several inputs or outputs: Concat (torch.cat), Split (torch.split), Add.

Their forward takes several arrays (or one list of them) or returns a tuple, and their backward
mirrors that: Concat.backward and Add.backward return one gradient per input, as a tuple;
Split.backward takes one gradient per piece (None for a piece that got none). They are the
joins of a cnnkit.nn.Graph.
"""

from __future__ import annotations

import numpy as np

from cnnkit.functional import join as F
from cnnkit.nn.module import CachedModule


def _inputs(xs: tuple) -> tuple:
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        return tuple(xs[0])
    return xs


class Concat(CachedModule):
    """y = [x_1, x_2, ...] joined along ``dim`` (torch.cat; DenseNet, Inception).

    Shape:
        inputs equal outside ``dim`` -> their shape with the lengths along ``dim`` added.
    """

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        out, self._cache = F.concat(_inputs(xs), self.dim)
        return out

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, ...]:
        return F.concat_backward(dout, self._take_cache())

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Split(CachedModule):
    """The pieces of x along ``dim``, sized as torch.split sizes them (ShuffleNet v2's split).

    Shape:
        (..., L, ...) -> a tuple of (..., L_i, ...): chunks of ``split_size_or_sections`` (an int;
        the last one shorter) or the listed lengths (adding up to L).
    """

    def __init__(self, split_size_or_sections, dim: int = 1):
        super().__init__()
        if isinstance(split_size_or_sections, list):
            split_size_or_sections = tuple(split_size_or_sections)
        F.check_split(split_size_or_sections, "Split")
        self.split_size_or_sections = split_size_or_sections
        self.dim = dim

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        pieces, self._cache = F.split(x, self.split_size_or_sections, self.dim)
        return pieces

    def backward(self, douts) -> np.ndarray:
        return F.split_backward(douts, self._take_cache())

    def extra_repr(self) -> str:
        return f"split_size_or_sections={self.split_size_or_sections!r}, dim={self.dim}"


class Add(CachedModule):
    """y = x_1 + x_2 + ... with broadcasting (a residual or multi-branch sum; keras Add).

    Shape:
        inputs that broadcast together -> their broadcast shape.
    """

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        out, self._cache = F.add(_inputs(xs))
        return out

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, ...]:
        return F.add_backward(dout, self._take_cache())
