"""Learning-rate schedules (after torch.optim.lr_scheduler), each a closed form of the epoch."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from typing import Any

from cnnkit.optim.optimizer import Optimizer, check_arg


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class LRScheduler:
    """Base class: sets each group's ``lr`` to ``lr_at(last_epoch)`` (torch.optim.lr_scheduler).

    Reference: https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate.
    Construction records ``initial_lr`` in every param group (``base_lrs``, as torch does) and
    takes step 0; call ``step()`` once per epoch (or once per batch for per-iteration schedules),
    after ``optimizer.step()``. The lr is a closed form of ``(base_lrs, last_epoch)``, so a
    scheduler's whole state is ``last_epoch`` and ``base_lrs``; torch computes most of these
    schedules recursively from the current lr, which agrees to rounding.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__}: optimizer must be an Optimizer, "
                f"got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def lr_at(self, epoch: int) -> list[float]:
        """The learning rate of every param group at ``epoch`` (0 is the start)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement lr_at")

    def get_lr(self) -> list[float]:
        """The learning rates at ``last_epoch``."""
        return self.lr_at(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        """The learning rates this scheduler set last (a copy)."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance ``last_epoch`` by one and set every group's lr."""
        self.last_epoch += 1
        self._set_lr(self.get_lr())

    def _set_lr(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def state_dict(self) -> dict[str, Any]:
        """``{"last_epoch": int, "base_lrs": [float], "last_lr": [float]}``."""
        return {
            "last_epoch": self.last_epoch,
            "base_lrs": list(self.base_lrs),
            "last_lr": list(self._last_lr),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output and set the optimizer's lrs to the saved last lrs.

        Setting the lrs (torch does not) makes the order of loading optimizer and scheduler
        irrelevant.
        """
        name = f"{type(self).__name__}.load_state_dict"
        expected = set(self.state_dict())
        if not isinstance(state_dict, Mapping) or set(state_dict) != expected:
            keys = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict)
            raise ValueError(f"{name}: expected keys {sorted(expected)}, got {keys}")
        groups = len(self.optimizer.param_groups)
        for key in ("base_lrs", "last_lr"):
            if len(state_dict[key]) != groups:
                raise ValueError(
                    f"{name}: {key} has {len(state_dict[key])} entries, expected {groups} "
                    f"(one per param group)"
                )
        last_epoch = state_dict["last_epoch"]
        if not _is_int(last_epoch) or last_epoch < 0:
            raise ValueError(f"{name}: invalid last_epoch={last_epoch!r}, expected an int >= 0")
        self.base_lrs = [float(lr) for lr in state_dict["base_lrs"]]
        self.last_epoch = last_epoch
        self._set_lr([float(lr) for lr in state_dict["last_lr"]])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, base_lrs={self.base_lrs})"


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)`` (torch.optim.lr_scheduler.StepLR).

    Reference: https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.StepLR.html.
    Xception (Chollet 2017) trains with ``StepLR(optimizer, step_size=2, gamma=0.94)``: the
    learning rate decays by 0.94 every 2 epochs.
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        check_arg(_is_int(step_size) and step_size >= 1, self, "step_size", step_size, "int >= 1")
        check_arg(gamma > 0, self, "gamma", gamma, "gamma > 0")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        """``base_lr * gamma ** (epoch // step_size)`` for every group."""
        return [base * self.gamma ** (epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """``lr = base_lr * gamma ** (number of milestones <= epoch)`` (lr_scheduler.MultiStepLR).

    Reference: https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.MultiStepLR.html.
    A milestone listed twice multiplies by gamma twice, as in torch.
    """

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1) -> None:
        milestones = sorted(milestones)
        for m in milestones:
            check_arg(_is_int(m) and m >= 1, self, "milestones", milestones, "ints >= 1")
        check_arg(gamma > 0, self, "gamma", gamma, "gamma > 0")
        self.milestones, self.gamma = milestones, gamma
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        """``base_lr * gamma ** bisect_right(milestones, epoch)`` for every group."""
        return [base * self.gamma ** bisect_right(self.milestones, epoch) for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch`` (torch.optim.lr_scheduler.ExponentialLR).

    Reference: https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ExponentialLR.html.
    """

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        check_arg(gamma > 0, self, "gamma", gamma, "gamma > 0")
        self.gamma = gamma
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        """``base_lr * gamma ** epoch`` for every group."""
        return [base * self.gamma**epoch for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2`` (SGDR, no restarts).

    Reference: https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CosineAnnealingLR.html
    (Loshchilov & Hutter 2017). Past ``T_max`` the cosine continues and the lr rises again,
    as torch's does.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803
        check_arg(_is_int(T_max) and T_max >= 1, self, "T_max", T_max, "int >= 1")
        check_arg(eta_min >= 0, self, "eta_min", eta_min, "eta_min >= 0")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        """The cosine-annealed lr of every group at ``epoch``."""
        cosine = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * cosine for base in self.base_lrs]


class LinearWarmup(LRScheduler):
    """Linear warm-up ``base_lr * (s + (1 - s) epoch / warmup_steps)``, then ``after`` takes over.

    Reference: torch's ``SequentialLR([LinearLR(opt, start_factor=s, total_iters=warmup_steps),
    after], milestones=[warmup_steps])`` (https://pytorch.org/docs/stable/generated/
    torch.optim.lr_scheduler.LinearLR.html); Goyal et al. 2017, "Accurate, large minibatch SGD".
    At ``epoch >= warmup_steps`` the lr is ``after.lr_at(epoch - warmup_steps)``, or ``base_lr``
    without ``after``. Step only the warm-up: it keeps ``after.last_epoch`` in step.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        start_factor: float = 1.0 / 3,
        after: LRScheduler | None = None,
    ) -> None:
        check_arg(
            _is_int(warmup_steps) and warmup_steps >= 1,
            self,
            "warmup_steps",
            warmup_steps,
            "int >= 1",
        )
        check_arg(
            0 < start_factor <= 1, self, "start_factor", start_factor, "0 < start_factor <= 1"
        )
        if after is not None and not isinstance(after, LRScheduler):
            raise TypeError(
                f"LinearWarmup: after must be an LRScheduler or None, got {type(after).__name__}"
            )
        if after is not None and after.optimizer is not optimizer:
            raise ValueError("LinearWarmup: after must schedule the same optimizer")
        self.warmup_steps, self.start_factor, self.after = warmup_steps, start_factor, after
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> list[float]:
        """The warm-up lr of every group at ``epoch``, or the ``after`` schedule's past it."""
        if epoch >= self.warmup_steps:
            if self.after is None:
                return list(self.base_lrs)
            return self.after.lr_at(epoch - self.warmup_steps)
        factor = self.start_factor + (1 - self.start_factor) * epoch / self.warmup_steps
        return [base * factor for base in self.base_lrs]

    def _set_lr(self, lrs: list[float]) -> None:
        super()._set_lr(lrs)
        if self.after is not None:
            self.after.last_epoch = max(self.last_epoch - self.warmup_steps, -1)
            self.after._last_lr = list(lrs)
