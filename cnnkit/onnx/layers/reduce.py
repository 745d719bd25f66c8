"""Reductions over axes (ONNX ReduceMean, ReduceSum, ReduceMax), forward beside backward."""

from __future__ import annotations

import numpy as np

from cnnkit.nn.module import CachedModule

REDUCTIONS = ("mean", "sum", "max")


class Reduce(CachedModule):
    """y = mean, sum or max of x over ``axes`` (every axis when None), kept as size 1 if keepdims.

    Backward: sum spreads dL/dy over the reduced elements, mean also divides it by their count,
    max sends it to the maxima (shared equally between ties, as torch's amax does).
    """

    def __init__(self, kind: str, axes: tuple[int, ...] | None = None, keepdims: bool = True):
        super().__init__()
        if kind not in REDUCTIONS:
            raise ValueError(f"Reduce kind must be one of {', '.join(REDUCTIONS)}, got {kind!r}")
        self.kind, self.axes, self.keepdims = kind, axes, keepdims

    def forward(self, x: np.ndarray) -> np.ndarray:
        axes = tuple(range(x.ndim)) if self.axes is None else tuple(a % x.ndim for a in self.axes)
        kept = getattr(np, "amax" if self.kind == "max" else self.kind)(x, axis=axes, keepdims=True)
        self._cache = (x, kept, axes) if self.kind == "max" else (x.shape, None, axes)
        return kept if self.keepdims else np.squeeze(kept, axis=axes)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        source, kept, axes = self._take_cache()
        shape = source.shape if self.kind == "max" else source
        grad = dout if self.keepdims else np.expand_dims(dout, axes)
        if self.kind == "sum":
            return np.broadcast_to(grad, shape).copy()
        if self.kind == "mean":
            count = np.prod([shape[a] for a in axes])
            return np.broadcast_to(grad / count, shape).copy()
        winners = source == kept
        return winners * (grad / winners.sum(axis=axes, keepdims=True))

    def extra_repr(self) -> str:
        return f"{self.kind}, axes={self.axes}, keepdims={self.keepdims}"
