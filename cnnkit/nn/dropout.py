"""Dropout layers (Srivastava et al., 2014; torch.nn.Dropout and Dropout2d)."""

from __future__ import annotations

import numpy as np

from cnnkit.functional._args import flag, unit_interval
from cnnkit.functional.dropout import dropout, dropout2d, dropout_backward
from cnnkit.nn.module import CachedModule


class Dropout(CachedModule):
    """Zero each element with probability p in training and scale the rest by 1/(1-p).

    Shape: any input shape; the output has the same shape. Identity in eval mode.
    ``inplace=True`` writes the output into the input array in training (backward needs only
    the mask); see cnnkit.nn.activation on when that is safe.
    """

    kernel = staticmethod(dropout)

    def __init__(
        self, p: float = 0.5, inplace: bool = False, rng: np.random.Generator | None = None
    ):
        super().__init__()
        self.p = unit_interval(p, f"{type(self).__name__} probability p")
        self.inplace = flag(inplace, f"{type(self).__name__} inplace")
        self.rng = np.random.default_rng() if rng is None else rng

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, scale = type(self).kernel(x, self.p, self.rng, self.training, self.inplace)
        self._cache = (scale,)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (scale,) = self._take_cache()
        return dropout_backward(dout, scale)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout2d(Dropout):
    """Zero whole feature maps x[n, c] with probability p in training, scale the rest by
    1/(1-p) (Tompson et al., 2015; torch.nn.Dropout2d).

    Shape: (N, C, H, W) -> the same. Identity in eval mode. As torch 2.13's, a 3-D input is read
    as (N, C, L), one mask value per (n, c), not as an unbatched (C, H, W) image, with torch's
    warning (use Dropout2d on x[None] for one image).
    """

    kernel = staticmethod(dropout2d)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        if x.ndim not in (3, 4):
            raise ValueError(f"Dropout2d expected (N, C, H, W) or (N, C, L) input, got {x.shape}")
        return super().forward(x)
