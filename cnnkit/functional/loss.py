"""Classification losses: softmax cross-entropy on logits, negative log-likelihood, and binary
cross-entropy on logits, with torch.nn's class weights, ignore_index, label smoothing and
reductions.

Class-indexed losses take an input (N, C, d1, ..., dk) (k >= 0; or (C,) unbatched) with the
classes on axis 1 and integer targets (N, d1, ..., dk) (or a scalar). Each returns
``(loss, cache)``; the matching ``*_backward(cache, dloss)`` returns dL/d(input).
"""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional import reference
from cnnkit.functional._args import check_float, unit_interval
from cnnkit.functional._loss_base import Reduction, check_reduction, same_shape_target
from cnnkit.functional.activation import log_softmax


def _class_input(x, op: str, what: str) -> np.ndarray:
    """``x`` with a batch axis: (C,) becomes (1, C); (N, C, d1, ...) is returned as it is."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op} expected a numpy.ndarray of {what}, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(
            f"{op} expected {what} of shape (C,), (N, C) or (N, C, d1, ...), got {x.shape}"
        )
    check_float(x, op, what)
    return x[None] if x.ndim == 1 else x


def _class_weight(weight, x: np.ndarray, op: str) -> np.ndarray | None:
    """The weights (C,) as x's dtype, shaped (1, C, 1, ...) to broadcast against x."""
    if weight is None:
        return None
    weight = np.asarray(weight)
    classes = x.shape[1]
    if weight.shape != (classes,):
        raise ValueError(
            f"{op} expected weight of shape ({classes},), one per class of input with "
            f"{classes} classes, got shape {weight.shape}"
        )
    return weight.astype(x.dtype, copy=False).reshape((1, classes) + (1,) * (x.ndim - 2))


def check_ignore_index(ignore_index, op: str) -> int:
    """Return ``ignore_index`` as an int; raise TypeError if it is not an integer."""
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{op} ignore_index must be an int, got {ignore_index!r}")
    return int(ignore_index)


def _labels(target: np.ndarray, x: np.ndarray, ignore_index: int, op: str) -> np.ndarray:
    classes = x.shape[1]
    if not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"{op} expected integer class labels, got dtype {target.dtype}")
    counted = target[target != ignore_index]
    if counted.size and (counted.min() < 0 or counted.max() >= classes):
        raise ValueError(
            f"{op} labels must lie in [0, {classes - 1}], got values from {counted.min()} to "
            f"{counted.max()} (ignore_index is {ignore_index})"
        )
    return target


def _pick(
    values: np.ndarray, target: np.ndarray, weight: np.ndarray | None, ignore_index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """values[n, y_n, ...], the target weights w_{y_n} (0 where ignored), the labels made safe
    to index with, and the mask of counted (not ignored) targets."""
    counted = target != ignore_index
    safe = np.where(counted, target, 0)
    picked = np.take_along_axis(values, safe[:, None], axis=1)[:, 0]
    if weight is None:
        target_weight = counted.astype(values.dtype)
    else:
        target_weight = np.where(counted, weight.reshape(-1)[safe], 0).astype(values.dtype)
    return picked, target_weight, safe, counted


def _label_shape(x: np.ndarray) -> tuple[int, ...]:
    """The shape of class labels for input x: (N, d1, ...) for (N, C, d1, ...), () for (C,)."""
    return x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()


def _shape_error(op: str, x: np.ndarray, target: np.ndarray, probabilities: bool):
    accepted = (
        f"labels of shape {_label_shape(x)} or one-hot/probabilities of shape {x.shape}"
        if probabilities
        else f"labels of shape {_label_shape(x)} for input of shape {x.shape}"
    )
    return ValueError(f"{op} expected {accepted}, got {target.shape}")


def cross_entropy(
    logits: np.ndarray,
    target: np.ndarray,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
) -> tuple[np.ndarray | float, tuple]:
    """l_n = -sum_c q_nc log softmax(z_n)_c, with log-sum-exp (torch.nn.CrossEntropyLoss).

    For labels y (N, d1, ...): q_nc = (1 - eps) w_{y_n} [c = y_n] + eps w_c / C, zero where
    y_n = ignore_index; the mean divides by sum_n w_{y_n} over the counted targets. For
    probabilities p of the logits' shape: q_nc = ((1 - eps) p_nc + eps / C) w_c, and the mean
    divides by the number of rows N d1 ... dk. Szegedy et al. (2016) for label smoothing eps.
    """
    op = "cross_entropy"
    mode = check_reduction(reduction)
    eps = unit_interval(label_smoothing, "label_smoothing")
    ignore_index = check_ignore_index(ignore_index, op)
    z = _class_input(logits, op, "logits")
    weight = _class_weight(weight, z, op)
    target = np.asarray(target)
    classes = z.shape[1]
    log_probs, _ = log_softmax(z, axis=1)
    if target.shape == logits.shape:
        q = target.astype(z.dtype, copy=False).reshape(z.shape)
        if eps:
            q = q * (1 - eps) + eps / classes
        if weight is not None:
            q = q * weight
        loss = -(q * log_probs).sum(axis=1)
        divisor = loss.size
        targets = q
    else:
        if target.shape != _label_shape(logits):
            raise _shape_error(op, logits, target, probabilities=True)
        labels = _labels(target.reshape(z.shape[:1] + z.shape[2:]), z, ignore_index, op)
        picked, target_weight, safe, counted = _pick(log_probs, labels, weight, ignore_index)
        loss = -(1 - eps) * target_weight * picked
        if eps:
            weighted = log_probs if weight is None else log_probs * weight
            loss = loss - eps / classes * weighted.sum(axis=1)
        loss = np.where(counted, loss, 0).astype(z.dtype, copy=False)
        divisor = target_weight.sum()
        targets = (target_weight, safe, counted)
    unbatched = logits.ndim == 1
    plain = mode == "mean" and not eps and weight is None and z.ndim == 2 and not unbatched
    if plain and reference.enabled() and isinstance(targets, tuple) and counted.all():
        args = (z, labels)
        loss = reference.softmax_cross_entropy(*args)
        return loss, reference.Call(_reference_cross_entropy_backward, args)
    visible = loss[0, ...] if unbatched else loss
    reduce = Reduction(mode, visible.shape, z.dtype, divisor)
    return reduce.apply(visible), (log_probs, targets, weight, eps, unbatched, reduce)


def _reference_cross_entropy_backward(dloss, logits, labels) -> np.ndarray:
    return reference.softmax_cross_entropy_backward(logits, labels) * dloss


def cross_entropy_backward(cache: tuple, dloss=1.0) -> np.ndarray:
    """dL/dz_n = g_n (softmax(z_n) sum_c q_nc - q_n), g_n = dL/dl_n (dloss / divisor if mean)."""
    if isinstance(cache, reference.Call):
        return cache.backward(dloss)
    log_probs, targets, weight, eps, unbatched, reduce = cache
    g = reduce.upstream(dloss, "cross_entropy")
    grad = np.exp(log_probs)
    if isinstance(targets, np.ndarray):  # the probabilities q
        per_row = g if g.ndim == 0 else np.expand_dims(g, 1)
        grad = (grad * targets.sum(axis=1, keepdims=True) - targets) * per_row
        return grad[0] if unbatched else grad
    target_weight, safe, counted = targets
    g = np.where(counted, g, 0).astype(log_probs.dtype, copy=False)
    classes = log_probs.shape[1]
    label_part = g * ((1 - eps) * target_weight)
    smooth = eps / classes
    weight_total = classes if weight is None else weight.sum()
    grad *= np.expand_dims(label_part + g * (smooth * weight_total), 1)
    if eps:
        grad -= np.expand_dims(g * smooth, 1) * (1 if weight is None else weight)
    index = safe[:, None]
    at_label = np.take_along_axis(grad, index, axis=1) - label_part[:, None]
    np.put_along_axis(grad, index, at_label, axis=1)
    return grad[0] if unbatched else grad


def nll_loss(
    log_probs: np.ndarray,
    target: np.ndarray,
    reduction: str = "mean",
    *,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
) -> tuple[np.ndarray | float, tuple]:
    """l_n = -w_{y_n} x[n, y_n] on log-probabilities x (torch.nn.NLLLoss), 0 where ignored.

    The mean divides by sum_n w_{y_n} over the counted (not ignored) targets.
    """
    op = "nll_loss"
    mode = check_reduction(reduction)
    ignore_index = check_ignore_index(ignore_index, op)
    x = _class_input(log_probs, op, "input")
    unbatched = log_probs.ndim == 1
    weight = _class_weight(weight, x, op)
    target = np.asarray(target)
    if target.shape != _label_shape(log_probs):
        raise _shape_error(op, log_probs, target, probabilities=False)
    labels = _labels(target.reshape(x.shape[:1] + x.shape[2:]), x, ignore_index, op)
    picked, target_weight, safe, counted = _pick(x, labels, weight, ignore_index)
    loss = np.where(counted, -target_weight * picked, 0).astype(x.dtype, copy=False)
    visible = loss[0, ...] if unbatched else loss
    reduce = Reduction(mode, visible.shape, x.dtype, target_weight.sum())
    return reduce.apply(visible), (x.shape, target_weight, safe, counted, unbatched, reduce)


def nll_loss_backward(cache: tuple, dloss=1.0) -> np.ndarray:
    """dL/dx[n, c] = -g_n w_{y_n} [c = y_n], g_n = dL/dl_n."""
    shape, target_weight, safe, counted, unbatched, reduce = cache
    g = np.where(counted, reduce.upstream(dloss, "nll_loss"), 0).astype(reduce.dtype, copy=False)
    grad = np.zeros(shape, reduce.dtype)
    np.put_along_axis(grad, safe[:, None], np.expand_dims(-g * target_weight, 1), axis=1)
    return grad[0] if unbatched else grad


def _broadcast_weight(value, x: np.ndarray, op: str, name: str) -> np.ndarray | None:
    if value is None:
        return None
    value = np.asarray(value)
    try:
        fits = np.broadcast_shapes(value.shape, x.shape) == x.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{op} expected {name} broadcastable to the input's shape {x.shape}, "
            f"got shape {value.shape}"
        )
    return value.astype(x.dtype, copy=False)


def binary_cross_entropy_with_logits(
    logits: np.ndarray,
    target: np.ndarray,
    reduction: str = "mean",
    *,
    weight: np.ndarray | None = None,
    pos_weight: np.ndarray | None = None,
) -> tuple[np.ndarray | float, tuple]:
    """l = w [(1 - t) x - (1 + (p - 1) t) log sigmoid(x)] (torch.nn.BCEWithLogitsLoss).

    log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)) never overflows; ``weight`` and
    ``pos_weight`` p broadcast against the logits (p usually one per class, on the last axis).
    """
    op = "binary_cross_entropy_with_logits"
    mode = check_reduction(reduction)
    x, t = same_shape_target(logits, target, op, "logits")
    weight = _broadcast_weight(weight, x, op, "weight")
    pos_weight = _broadcast_weight(pos_weight, x, op, "pos_weight")
    decay = np.exp(-np.abs(x))
    log_sigmoid = np.minimum(x, 0) - np.log1p(decay)
    if pos_weight is not None:
        log_sigmoid = log_sigmoid * ((pos_weight - 1) * t + 1)
    loss = (1 - t) * x - log_sigmoid
    if weight is not None:
        loss = loss * weight
    reduce = Reduction(mode, x.shape, x.dtype, x.size)
    return reduce.apply(loss), (x, t, decay, weight, pos_weight, reduce)


def binary_cross_entropy_with_logits_backward(cache: tuple, dloss=1.0) -> np.ndarray:
    """dl/dx = w [(1 + (p - 1) t) sigmoid(x) - p t], sigmoid(x) - t without pos_weight."""
    x, t, decay, weight, pos_weight, reduce = cache
    sigmoid = np.where(x >= 0, 1, decay) / (1 + decay)
    if pos_weight is None:
        grad = sigmoid - t
    else:
        positive = pos_weight * t
        grad = (positive + 1 - t) * sigmoid - positive
    if weight is not None:
        grad = grad * weight
    return reduce.chain(grad, dloss, "binary_cross_entropy_with_logits")
