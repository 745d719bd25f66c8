"""What every loss shares: the reduction of its per-element values and the gradient back through
it, and the check of a target that must have the input's shape.

torch.nn's ``reduction``: 'none' returns the per-element losses, 'sum' their sum, 'mean' their
sum divided by a divisor (the element count, or for class-weighted losses the sum of the weights
of the counted targets; 0 / 0 gives nan as in torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnkit.functional._args import check_float

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction) -> str:
    """Return ``reduction`` if it is 'none', 'mean' or 'sum'; raise ValueError otherwise."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


@dataclass(frozen=True)
class Reduction:
    """L = l ('none'), sum l ('sum') or sum l / divisor ('mean') for per-element losses l."""

    mode: str
    shape: tuple[int, ...]
    dtype: np.dtype
    divisor: float = 1.0

    def apply(self, loss: np.ndarray) -> np.ndarray | float:
        """The reduced loss: the array itself for 'none', else a Python float."""
        if self.mode == "none":
            return np.asarray(loss)
        total = loss.sum()
        if self.mode == "sum":
            return float(total)
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(total / self.dtype.type(self.divisor))

    def upstream(self, dloss, op: str) -> np.ndarray:
        """dL/dl for dloss = dL/d(returned loss): dloss, or dloss / divisor for the mean.

        ``dloss`` must have the returned loss's shape: the per-element shape for 'none', a
        number (or 0-d array) for 'mean' and 'sum'.
        """
        expected = self.shape if self.mode == "none" else ()
        if np.shape(dloss) != expected:
            raise ValueError(
                f"{op} backward expected dloss of shape {expected} (the loss's shape with "
                f"reduction={self.mode!r}), got {np.shape(dloss)}"
            )
        grad = np.asarray(dloss, dtype=self.dtype)
        if self.mode == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                grad = grad / self.dtype.type(self.divisor)
        return grad

    def chain(self, local: np.ndarray, dloss, op: str) -> np.ndarray:
        """dL/dx = dl/dx * dL/dl for a loss whose element l_i depends on x_i alone."""
        return np.asarray(local * self.upstream(dloss, op))


def same_shape_target(x, target, op: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Check a float input ``x`` and a target of its shape; return both, the target as x's dtype."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op} expected a numpy.ndarray {what}, got {type(x).__name__}")
    check_float(x, op, what)
    target = np.asarray(target)
    if target.shape != x.shape:
        raise ValueError(f"{op} expected target of shape {x.shape}, got {target.shape}")
    return x, target.astype(x.dtype, copy=False)
