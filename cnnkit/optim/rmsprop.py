"""RMSprop (after torch.optim.RMSprop)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnkit.nn.module import Parameter
from cnnkit.optim.optimizer import Optimizer, ParamGroup, check_arg


class RMSprop(Optimizer):
    """RMSprop, Hinton's lecture 6e (https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html).

    With ``g = grad + weight_decay * p``: ``v = alpha v + (1 - alpha) g^2``; if centered,
    ``a = a + (1 - alpha)(g - a)`` and ``v~ = v - a^2``, else ``v~ = v``; ``d = sqrt(v~) + eps``;
    with momentum ``b = momentum b + g / d`` and ``p = p - lr b``, else ``p = p - lr g / d``.
    """

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _validate(self, group: ParamGroup) -> None:
        super()._validate(group)
        check_arg(0 <= group["alpha"] <= 1, self, "alpha", group["alpha"], "0 <= alpha <= 1")
        check_arg(group["eps"] >= 0, self, "eps", group["eps"], "eps >= 0")
        check_arg(group["momentum"] >= 0, self, "momentum", group["momentum"], "momentum >= 0")

    def _init_state(self, param: np.ndarray, group: ParamGroup) -> dict[str, np.ndarray]:
        names = ["square_avg"]
        names += ["momentum_buffer"] if group["momentum"] > 0 else []
        names += ["grad_avg"] if group["centered"] else []
        return {name: np.zeros_like(param) for name in names}

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: ParamGroup
    ) -> None:
        alpha = group["alpha"]
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg += (1 - alpha) * (grad - grad_avg)  # torch: grad_avg.lerp_(grad, 1 - alpha)
            avg = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = np.sqrt(square_avg)
        avg += group["eps"]
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += grad / avg
            param -= group["lr"] * buf
        else:
            param -= group["lr"] * grad / avg
