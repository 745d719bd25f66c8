"""Local response normalisation across channels (Krizhevsky et al., 2012, AlexNet; ONNX LRN,
torch.nn.LocalResponseNorm), forward beside backward."""

from __future__ import annotations

import numpy as np

from cnnkit.nn.module import CachedModule


def _window_sums(v: np.ndarray, before: int, after: int) -> np.ndarray:
    """s[:, c] = sum of v[:, c - before : c + after + 1] (clipped to the channels), by cumsum."""
    c = v.shape[1]
    padded = np.zeros((v.shape[0], c + 1, *v.shape[2:]), dtype=v.dtype)
    np.cumsum(v, axis=1, out=padded[:, 1:])
    top = np.minimum(np.arange(c) + after + 1, c)
    bottom = np.maximum(np.arange(c) - before, 0)
    return padded[:, top] - padded[:, bottom]


class LocalResponseNorm(CachedModule):
    """y = x / (bias + alpha / size * sum of x^2 over ``size`` neighbouring channels) ^ beta.

    The window of channel c spans c - floor((size - 1) / 2) to c + ceil((size - 1) / 2) (ONNX's
    rule; torch's for odd sizes). Backward, with d = bias + alpha/size * S and S the window sum:
    dL/dx = dy d^-beta - 2 alpha beta / size * x * S^T(dy x d^(-beta - 1)), S^T the window
    sum with the two sides swapped.

    Shape: (N, C, *) -> (N, C, *).
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def forward(self, x: np.ndarray) -> np.ndarray:
        before, after = (self.size - 1) // 2, self.size // 2
        d = self.k + (self.alpha / self.size) * _window_sums(x * x, before, after)
        scale = d ** (-self.beta)
        self._cache = (x, d, scale)
        return x * scale

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, d, scale = self._take_cache()
        before, after = (self.size - 1) // 2, self.size // 2
        inner = _window_sums(dout * x * scale / d, after, before)
        return dout * scale - (2 * self.alpha * self.beta / self.size) * x * inner

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
