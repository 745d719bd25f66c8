"""Regression losses on d = prediction - target: squared, absolute, smooth L1 and Huber.

Each returns ``(loss, cache)``; ``reduction`` is 'mean' (over every element), 'sum' or 'none'
(the per-element losses, of the prediction's shape). The formulas are torch.nn's.
"""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional._loss_base import Reduction, check_reduction, same_shape_target


def _difference(op: str, prediction, target, reduction: str) -> tuple[np.ndarray, Reduction]:
    mode = check_reduction(reduction)
    prediction, target = same_shape_target(prediction, target, op, "prediction")
    diff = prediction - target
    return diff, Reduction(mode, diff.shape, diff.dtype, diff.size)


def check_threshold(value, op: str, name: str, *, positive: bool) -> float:
    """Return ``value`` as a float if it is a number >= 0 (> 0 if ``positive``); raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        ok = False
    else:
        ok = value > 0 if positive else value >= 0
    if not ok:
        expected = "a positive number" if positive else "a non-negative number"
        raise ValueError(f"{op} {name} must be {expected}, got {value!r}")
    return float(value)


def mse_loss(
    prediction: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray | float, tuple]:
    """l = (prediction - target)^2 (torch.nn.MSELoss)."""
    diff, reduce = _difference("mse_loss", prediction, target, reduction)
    return reduce.apply(diff * diff), (diff, reduce)


def mse_loss_backward(cache: tuple, dloss=1.0) -> np.ndarray:
    """dl/dprediction = 2 (prediction - target)."""
    diff, reduce = cache
    return reduce.chain(2 * diff, dloss, "mse_loss")


def l1_loss(
    prediction: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[np.ndarray | float, tuple]:
    """l = |prediction - target| (torch.nn.L1Loss)."""
    diff, reduce = _difference("l1_loss", prediction, target, reduction)
    return reduce.apply(np.abs(diff)), (diff, reduce)


def l1_loss_backward(cache: tuple, dloss=1.0) -> np.ndarray:
    """dl/dprediction = sign(prediction - target) (0 where they are equal, as torch)."""
    diff, reduce = cache
    return reduce.chain(np.sign(diff), dloss, "l1_loss")


def smooth_l1_loss(
    prediction: np.ndarray, target: np.ndarray, reduction: str = "mean", beta: float = 1.0
) -> tuple[np.ndarray | float, tuple]:
    """l = 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (torch.nn.SmoothL1Loss).

    Girshick, Fast R-CNN (2015); beta = 0 is the L1 loss.
    """
    beta = check_threshold(beta, "smooth_l1_loss", "beta", positive=False)
    diff, reduce = _difference("smooth_l1_loss", prediction, target, reduction)
    z = np.abs(diff)
    loss = np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta) if beta else z
    return reduce.apply(loss), (diff, beta, reduce)


def smooth_l1_loss_backward(cache: tuple, dloss=1.0) -> np.ndarray:
    """dl/dprediction = clip(d / beta, -1, 1), sign(d) for beta = 0."""
    diff, beta, reduce = cache
    local = np.clip(diff / diff.dtype.type(beta), -1, 1) if beta else np.sign(diff)
    return reduce.chain(local, dloss, "smooth_l1_loss")


def huber_loss(
    prediction: np.ndarray, target: np.ndarray, reduction: str = "mean", delta: float = 1.0
) -> tuple[np.ndarray | float, tuple]:
    """l = 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) (Huber 1964)."""
    delta = check_threshold(delta, "huber_loss", "delta", positive=True)
    diff, reduce = _difference("huber_loss", prediction, target, reduction)
    z = np.abs(diff)
    loss = np.where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta))
    return reduce.apply(loss), (diff, delta, reduce)


def huber_loss_backward(cache: tuple, dloss=1.0) -> np.ndarray:
    """dl/dprediction = clip(d, -delta, delta)."""
    diff, delta, reduce = cache
    bound = diff.dtype.type(delta)
    return reduce.chain(np.clip(diff, -bound, bound), dloss, "huber_loss")
