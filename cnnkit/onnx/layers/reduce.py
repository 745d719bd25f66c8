"""Reductions over axes (ONNX ReduceMean, ReduceSum, ReduceMax), forward beside backward."""

from __future__ import annotations

import numpy as np

from cnnkit.nn.module import CachedModule

REDUCTIONS = ("mean", "sum", "max")


def _lowest(dtype: np.dtype):
    """The maximum of an empty set (ONNX: the lowest value of the type, -inf for floats)."""
    if dtype.kind == "f":
        return -np.inf
    return False if dtype.kind == "b" else np.iinfo(dtype).min


class Reduce(CachedModule):
    """y = mean, sum or max of x over ``axes`` (every axis when None or empty, none when empty
    and ``noop_with_empty_axes``), the reduced axes kept as size 1 if ``keepdims``.

    The axes are held, or read at run time as a second input. Backward: sum spreads dL/dy over
    the reduced elements, mean also divides it by their count, max sends it to the maxima
    (shared equally between ties, as torch's amax does).
    """

    def __init__(
        self,
        kind: str,
        axes: tuple[int, ...] | None = None,
        keepdims: bool = True,
        noop_with_empty_axes: bool = False,
    ):
        super().__init__()
        if kind not in REDUCTIONS:
            raise ValueError(f"Reduce kind must be one of {', '.join(REDUCTIONS)}, got {kind!r}")
        self.kind, self.axes, self.keepdims = kind, axes, keepdims
        self.noop_with_empty_axes = noop_with_empty_axes

    def _axes(self, x: np.ndarray, given) -> tuple[int, ...]:
        axes = self.axes if given is None else tuple(int(a) for a in np.ravel(given))
        if not axes:
            return () if self.noop_with_empty_axes else tuple(range(x.ndim))
        return tuple(a % x.ndim for a in axes)

    def forward(self, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
        reduced = self._axes(x, axes)
        if not reduced:
            kept = x
        elif self.kind == "max":
            kept = np.amax(x, axis=reduced, keepdims=True, initial=_lowest(x.dtype))
        else:
            kept = getattr(np, self.kind)(x, axis=reduced, keepdims=True)
        self._cache = (x, kept, reduced, axes is not None)
        return kept if self.keepdims else np.squeeze(kept, axis=reduced)

    def backward(self, dout: np.ndarray):
        x, kept, axes, runtime_axes = self._take_cache()
        grad = dout if self.keepdims else np.expand_dims(dout, axes)
        if not axes:
            dx = grad
        elif self.kind == "sum":
            dx = np.broadcast_to(grad, x.shape).copy()
        elif self.kind == "mean":
            count = np.prod([x.shape[a] for a in axes])
            dx = np.broadcast_to(grad / count, x.shape).copy()
        else:
            winners = x == kept
            dx = winners * (grad / winners.sum(axis=axes, keepdims=True))
        return (dx, None) if runtime_axes else dx

    def extra_repr(self) -> str:
        return f"{self.kind}, axes={self.axes}, keepdims={self.keepdims}"
