"""Classification metrics on logits or scores (N, K) and integer labels (N,)."""

from __future__ import annotations

import numpy as np


def top_k_correct(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> int:
    """Number of rows whose label is among the k highest scores (ties broken by index)."""
    k = min(k, scores.shape[1])
    if k == 1:
        return int((scores.argmax(axis=1) == labels).sum())
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Top-k accuracy: the fraction of rows whose label is among the k highest scores."""
    return top_k_correct(scores, labels, k) / max(len(labels), 1)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts C[t, p] of samples with true class t predicted as p."""
    flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
