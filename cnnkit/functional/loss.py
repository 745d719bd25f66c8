"""Losses on network outputs: softmax cross-entropy on logits and mean squared error."""

from __future__ import annotations

import numpy as np

from cnnkit.functional._args import check_float, unit_interval
from cnnkit.functional.activation import log_softmax

REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _target_distribution(target: np.ndarray, logits: np.ndarray) -> np.ndarray:
    n, classes = logits.shape
    if target.ndim == 1:
        if not np.issubdtype(target.dtype, np.integer):
            raise TypeError(
                f"cross_entropy expected integer class labels, got dtype {target.dtype}"
            )
        if target.shape[0] != n:
            raise ValueError(
                f"cross_entropy expected {n} labels for logits {logits.shape}, "
                f"got {target.shape[0]}"
            )
        if target.size and (target.min() < 0 or target.max() >= classes):
            raise ValueError(
                f"cross_entropy labels must lie in [0, {classes - 1}], "
                f"got values from {target.min()} to {target.max()}"
            )
        q = np.zeros_like(logits)
        q[np.arange(n), target] = 1
        return q
    if target.shape != logits.shape:
        raise ValueError(
            f"cross_entropy expected labels of shape ({n},) or one-hot/probabilities of shape "
            f"{logits.shape}, got {target.shape}"
        )
    return target.astype(logits.dtype, copy=False)


def cross_entropy(
    logits: np.ndarray,
    target: np.ndarray,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> tuple[float, tuple]:
    """L = -sum_k q_k log softmax(z)_k, q = (1 - eps) * target + eps / K, with log-sum-exp.

    ``target`` holds integer labels (N,) or one-hot/probability rows (N, K).
    """
    _check_reduction(reduction)
    if not isinstance(logits, np.ndarray) or logits.ndim != 2:
        raise ValueError(
            f"cross_entropy expected logits of shape (N, classes), got "
            f"{getattr(logits, 'shape', type(logits).__name__)}"
        )
    check_float(logits, "cross_entropy", "logits")
    label_smoothing = unit_interval(label_smoothing, "label_smoothing")
    target = np.asarray(target)
    q = _target_distribution(target, logits)
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / logits.shape[1]
    log_probs, _ = log_softmax(logits, axis=1)
    per_sample = -(q * log_probs).sum(axis=1)
    total = per_sample.sum()
    divisor = logits.shape[0] if reduction == "mean" else 1
    return float(total / divisor), (log_probs, q, divisor)


def cross_entropy_backward(cache: tuple, dloss: float = 1.0) -> np.ndarray:
    """dL/dz = (softmax(z) * sum_k q_k - q) / N for the mean (without / N for the sum)."""
    log_probs, q, divisor = cache
    probs = np.exp(log_probs)
    grad = probs * q.sum(axis=1, keepdims=True) - q
    return grad * (dloss / divisor)


def mse_loss(
    prediction: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[float, tuple]:
    """L = mean (or sum) of (prediction - target)^2."""
    _check_reduction(reduction)
    if not isinstance(prediction, np.ndarray):
        raise TypeError(
            f"mse_loss expected a numpy.ndarray prediction, got {type(prediction).__name__}"
        )
    check_float(prediction, "mse_loss", "prediction")
    target = np.asarray(target)
    if prediction.shape != target.shape:
        raise ValueError(
            f"mse_loss expected target of shape {prediction.shape}, got {target.shape}"
        )
    diff = prediction - target.astype(prediction.dtype, copy=False)
    divisor = diff.size if reduction == "mean" else 1
    return float((diff * diff).sum() / divisor), (diff, divisor)


def mse_loss_backward(cache: tuple, dloss: float = 1.0) -> np.ndarray:
    """dL/dprediction = 2 (prediction - target) / numel for the mean."""
    diff, divisor = cache
    return diff * (2 * dloss / divisor)
