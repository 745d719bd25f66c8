"""Stochastic gradient descent with momentum (after torch.optim.SGD)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnkit.nn.module import Parameter
from cnnkit.optim.optimizer import Optimizer, ParamGroup, check_arg


class SGD(Optimizer):
    """SGD with momentum/Nesterov (https://pytorch.org/docs/stable/generated/torch.optim.SGD.html).

    With ``g = grad + weight_decay * p``: ``b = g`` on the first step, afterwards
    ``b = momentum * b + (1 - dampening) * g``; then ``g = g + momentum * b`` (Nesterov) or
    ``g = b``, and ``p = p - lr * g``. Nesterov momentum follows Sutskever et al. (2013).
    """

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _validate(self, group: ParamGroup) -> None:
        super()._validate(group)
        momentum, dampening = group["momentum"], group["dampening"]
        check_arg(momentum >= 0, self, "momentum", momentum, "momentum >= 0")
        check_arg(0 <= dampening <= 1, self, "dampening", dampening, "0 <= dampening <= 1")
        check_arg(
            not group["nesterov"] or (momentum > 0 and dampening == 0),
            self,
            "nesterov",
            group["nesterov"],
            f"momentum > 0 and dampening = 0 (got momentum={momentum}, dampening={dampening})",
        )

    def _init_state(self, param: np.ndarray, group: ParamGroup) -> dict[str, np.ndarray]:
        return {"momentum_buffer": np.zeros_like(param)} if group["momentum"] != 0 else {}

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: ParamGroup
    ) -> None:
        momentum = group["momentum"]
        if momentum != 0:
            buf = state["momentum_buffer"]
            if state["step"] == 1:
                buf[...] = grad
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        param -= group["lr"] * grad
