"""Adam and AdamW (after torch.optim.Adam and torch.optim.AdamW)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnkit.nn.module import Parameter
from cnnkit.optim.optimizer import Optimizer, ParamGroup, check_arg


class Adam(Optimizer):
    """Adam, Kingma & Ba 2015 (https://pytorch.org/docs/stable/generated/torch.optim.Adam.html).

    With ``g = grad + weight_decay * p`` and t the step number: ``m = m + (1 - beta1)(g - m)``,
    ``v = beta2 v + (1 - beta2) g^2`` (``vmax = max(vmax, v)`` replaces v below if amsgrad),
    ``p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``.
    """

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _validate(self, group: ParamGroup) -> None:
        super()._validate(group)
        betas = group["betas"]
        check_arg(
            isinstance(betas, tuple) and len(betas) == 2, self, "betas", betas, "(beta1, beta2)"
        )
        for i, beta in enumerate(betas):
            check_arg(0 <= beta < 1, self, f"betas[{i}]", beta, f"0 <= betas[{i}] < 1")
        check_arg(group["eps"] >= 0, self, "eps", group["eps"], "eps >= 0")

    def _init_state(self, param: np.ndarray, group: ParamGroup) -> dict[str, np.ndarray]:
        names = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group["amsgrad"] else [])
        return {name: np.zeros_like(param) for name in names}

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: ParamGroup
    ) -> None:
        beta1, beta2 = group["betas"]
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (1 - beta1) * (grad - exp_avg)  # torch: exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        if group["amsgrad"]:
            max_exp_avg_sq = state["max_exp_avg_sq"]
            exp_avg_sq = np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        step_size = group["lr"] / (1 - beta1**step)
        denom = np.sqrt(exp_avg_sq)
        denom /= (1 - beta2**step) ** 0.5
        denom += group["eps"]
        param -= step_size * exp_avg / denom


class AdamW(Adam):
    """Adam with decoupled weight decay, Loshchilov & Hutter 2019 (torch.optim.AdamW).

    Reference: https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html.
    ``p = p * (1 - lr * weight_decay)`` first, then the Adam step on the raw gradient;
    the default ``weight_decay=1e-2`` is torch's.
    """

    _decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
