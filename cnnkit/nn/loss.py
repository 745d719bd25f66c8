"""Loss modules (torch.nn.CrossEntropyLoss, torch.nn.MSELoss): call returns a float."""

from __future__ import annotations

import numpy as np

from cnnkit.functional import loss as F
from cnnkit.functional._args import unit_interval


class _Loss:
    def __init__(self, reduction: str = "mean"):
        F._check_reduction(reduction)
        self.reduction = reduction
        self._cache = None

    def backward(self, dloss: float = 1.0) -> np.ndarray:
        """dL/d(prediction) for the last call, scaled by ``dloss``."""
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before the loss was computed"
            )
        return self._backward(self._cache, dloss)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits (N, K) with integer labels (N,) or probabilities (N, K).

    L = -sum_k q_k log softmax(z)_k with q smoothed as (1 - eps) q + eps / K; the gradient is
    (softmax(z) - q) / N for the mean reduction.
    """

    _backward = staticmethod(F.cross_entropy_backward)

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.label_smoothing = unit_interval(label_smoothing, "label_smoothing")

    def __call__(self, logits: np.ndarray, target: np.ndarray) -> float:
        loss, self._cache = F.cross_entropy(logits, target, self.reduction, self.label_smoothing)
        return loss

    def __repr__(self) -> str:
        return (
            f"CrossEntropyLoss(reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing})"
        )


class MSELoss(_Loss):
    """Mean squared error L = mean((prediction - target)^2) (or the sum)."""

    _backward = staticmethod(F.mse_loss_backward)

    def __call__(self, prediction: np.ndarray, target: np.ndarray) -> float:
        loss, self._cache = F.mse_loss(prediction, target, self.reduction)
        return loss

    def __repr__(self) -> str:
        return f"MSELoss(reduction={self.reduction!r})"
