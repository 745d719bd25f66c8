"""Loss modules with torch.nn's names, arguments and defaults.

``loss_fn(input, target)`` returns the loss (a float for 'mean' and 'sum', the per-element
array for 'none'); ``loss_fn.backward(dloss=1.0)`` returns dL/d(input), where ``dloss`` has the
returned loss's shape. Like every CachedModule, a loss keeps one cache per call and backward
pops the newest. Class weights and pos_weight are buffers (in state_dict, cast by ``to``).
"""

from __future__ import annotations

import numpy as np

from cnnkit.functional import loss as C
from cnnkit.functional import regression_loss as R
from cnnkit.functional._args import unit_interval
from cnnkit.functional._loss_base import check_reduction
from cnnkit.nn.module import CachedModule


class _Loss(CachedModule):
    """A loss: forward calls ``_function(input, target, reduction, **options)``, backward
    ``_function_backward(cache, dloss)``."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = check_reduction(reduction)

    def _options(self) -> dict:
        """The functional's keyword arguments besides the reduction (also shown by repr)."""
        return {}

    def forward(self, input: np.ndarray, target: np.ndarray):
        loss, self._cache = self._function(input, target, self.reduction, **self._options())
        return loss

    def backward(self, dloss=1.0) -> np.ndarray:
        """dL/d(input) of the newest pending call, for dL/d(loss) = ``dloss``."""
        return self._function_backward(self._take_cache(), dloss)

    def _buffer(self, name: str, value) -> None:
        """Register ``value`` as a float buffer, or set the attribute to None without one."""
        if value is None:
            setattr(self, name, None)
            return
        array = np.array(np.asarray(value))
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32)
        self.register_buffer(name, array)

    def extra_repr(self) -> str:
        parts = [f"reduction={self.reduction!r}"]
        for name, value in self._options().items():
            if isinstance(value, np.ndarray):
                parts.append(f"{name}={np.array2string(value, separator=', ', threshold=8)}")
            elif value is not None:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)


class NLLLoss(_Loss):
    """Negative log-likelihood l_n = -w_{y_n} x[n, y_n] on log-probabilities (torch.nn.NLLLoss).

    Shape: input (N, C, d1, ..., dk) or (C,), target (N, d1, ..., dk) or (); the loss has the
    target's shape for reduction='none', else it is a float (the mean divides by the sum of the
    weights of the targets that are not ignore_index).
    """

    _function = staticmethod(C.nll_loss)
    _function_backward = staticmethod(C.nll_loss_backward)

    def __init__(self, weight=None, *, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction)
        if weight is not None and np.ndim(weight) != 1:
            raise ValueError(
                f"{type(self).__name__} weight must be a 1-D array of class weights, got shape "
                f"{np.shape(weight)}"
            )
        self._buffer("weight", weight)
        self.ignore_index = C.check_ignore_index(ignore_index, type(self).__name__)

    def _options(self) -> dict:
        return {"weight": self.weight, "ignore_index": self.ignore_index}


class CrossEntropyLoss(NLLLoss):
    """Softmax cross-entropy l_n = -sum_c q_nc log softmax(z_n)_c (torch.nn.CrossEntropyLoss).

    Targets are class labels (N, d1, ...) or probabilities of the logits' shape; label smoothing
    eps mixes in the uniform distribution as (1 - eps) q + eps / C (Szegedy et al. 2016). The
    gradient is g_n (softmax(z_n) sum_c q_nc - q_n).

    Shape: input (N, C, d1, ..., dk) or (C,); the loss is (N, d1, ..., dk) (or ()) for
    reduction='none', else a float.
    """

    _function = staticmethod(C.cross_entropy)
    _function_backward = staticmethod(C.cross_entropy_backward)

    def __init__(
        self,
        weight=None,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ):
        super().__init__(weight, ignore_index=ignore_index, reduction=reduction)
        self.label_smoothing = unit_interval(label_smoothing, "label_smoothing")

    def _options(self) -> dict:
        return {**super()._options(), "label_smoothing": self.label_smoothing}


class BCEWithLogitsLoss(_Loss):
    """l = w [(1 - t) x - (1 + (p - 1) t) log sigmoid(x)] (torch.nn.BCEWithLogitsLoss).

    Binary cross-entropy on logits x, with a log-sigmoid that never overflows. Shape: input
    and target of one shape; ``weight`` and ``pos_weight`` p broadcast to it.
    """

    _function = staticmethod(C.binary_cross_entropy_with_logits)
    _function_backward = staticmethod(C.binary_cross_entropy_with_logits_backward)

    def __init__(self, weight=None, *, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self._buffer("weight", weight)
        self._buffer("pos_weight", pos_weight)

    def _options(self) -> dict:
        return {"weight": self.weight, "pos_weight": self.pos_weight}


class MSELoss(_Loss):
    """Mean squared error l = (prediction - target)^2 (torch.nn.MSELoss).

    Shape: prediction and target of one shape, the loss too for reduction='none'.
    """

    _function = staticmethod(R.mse_loss)
    _function_backward = staticmethod(R.mse_loss_backward)

    def __init__(self, *, reduction: str = "mean"):
        super().__init__(reduction)


class L1Loss(_Loss):
    """Mean absolute error l = |prediction - target| (torch.nn.L1Loss).

    Shape: prediction and target of one shape, the loss too for reduction='none'.
    """

    _function = staticmethod(R.l1_loss)
    _function_backward = staticmethod(R.l1_loss_backward)

    def __init__(self, *, reduction: str = "mean"):
        super().__init__(reduction)


class SmoothL1Loss(_Loss):
    """l = 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (torch.nn.SmoothL1Loss).

    Girshick, Fast R-CNN (2015); beta = 0 gives the L1 loss. Shape: as L1Loss.
    """

    _function = staticmethod(R.smooth_l1_loss)
    _function_backward = staticmethod(R.smooth_l1_loss_backward)

    def __init__(self, *, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = R.check_threshold(beta, "SmoothL1Loss", "beta", positive=False)

    def _options(self) -> dict:
        return {"beta": self.beta}


class HuberLoss(_Loss):
    """l = 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) (torch.nn.HuberLoss).

    Huber, Robust Estimation of a Location Parameter (1964). Shape: as L1Loss.
    """

    _function = staticmethod(R.huber_loss)
    _function_backward = staticmethod(R.huber_loss_backward)

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = R.check_threshold(delta, "HuberLoss", "delta", positive=True)

    def _options(self) -> dict:
        return {"delta": self.delta}
