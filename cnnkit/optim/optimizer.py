"""Optimizer: parameter groups, per-parameter state, state dicts (after torch.optim.Optimizer)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from cnnkit.nn.module import Parameter

ParamGroup = dict[str, Any]


def check_arg(ok: bool, owner: object, name: str, value: Any, expected: str) -> None:
    """Raise ``ValueError('<Owner>: invalid <name>=<value>, expected <expected>')`` unless ok."""
    if not ok:
        raise ValueError(f"{type(owner).__name__}: invalid {name}={value!r}, expected {expected}")


def _plain(value: Any) -> Any:
    """NumPy scalars to Python numbers (so float32 arithmetic stays float32 under NEP 50)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    return value


class Optimizer:
    """Base class of the optimizers: param_groups, per-parameter state, step, state dicts.

    Reference: https://pytorch.org/docs/stable/optim.html (torch.optim.Optimizer).

    ``params`` is a list of Parameter, or a list of dicts ``{"params": [...], **overrides}``
    (parameter groups, each with its own hyper-parameters, the rest taken from ``defaults``,
    which must hold at least ``lr``, ``weight_decay`` and ``maximize``).
    Every algorithm here starts its step the way torch's do: ``g = -grad`` if ``maximize``,
    then ``g = g + weight_decay * p`` (L2 penalty) or, for decoupled weight decay (AdamW),
    ``p = p * (1 - lr * weight_decay)``. Subclasses give the initial per-parameter state
    (``_init_state``) and the rest of the update (``_update``), which works in place on
    ``p.data`` in its own dtype.

    Unlike torch there is no ``grad=None`` to skip a parameter: a parameter whose gradient is
    all zero is still updated (weight decay, momentum and the Adam moments keep acting on it),
    which is what torch does for a zero, as opposed to a missing, gradient.
    """

    _decoupled_weight_decay: bool = False

    def __init__(self, params: Iterable[Parameter] | Iterable[ParamGroup], defaults: ParamGroup):
        self.defaults = {k: _plain(v) for k, v in defaults.items()}
        self.param_groups: list[ParamGroup] = []
        self.state: dict[Parameter, dict[str, Any]] = {}
        if isinstance(params, (Parameter, np.ndarray)):
            raise TypeError(
                f"{type(self).__name__}: params must be a list of Parameter or of dicts, "
                f"got a single {type(params).__name__}"
            )
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], Mapping) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add a group ``{"params": [...], **hyper-parameters}``, the missing ones from defaults."""
        if not isinstance(group, Mapping) or "params" not in group:
            raise ValueError(
                f"{type(self).__name__}: a parameter group must be a dict with a 'params' key, "
                f"got {group!r}"
            )
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{type(self).__name__}: params must be Parameter objects, "
                    f"got {type(p).__name__}"
                )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError(f"{type(self).__name__}: a parameter appears more than once")
        new = {**self.defaults, **{k: _plain(v) for k, v in group.items() if k != "params"}}
        self._validate(new)
        self.param_groups.append({"params": params, **new})

    def _validate(self, group: ParamGroup) -> None:
        """Check the hyper-parameters of one group (subclasses extend this)."""
        check_arg(group["lr"] >= 0, self, "lr", group["lr"], "lr >= 0")
        wd = group["weight_decay"]
        check_arg(wd >= 0, self, "weight_decay", wd, "weight_decay >= 0")

    def _init_state(self, param: np.ndarray, group: ParamGroup) -> dict[str, np.ndarray]:
        """The arrays this optimizer keeps for ``param``, before its first step."""
        return {}

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: ParamGroup
    ) -> None:
        """Update ``param`` in place from ``grad`` (weight decay already applied)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _update")

    def step(self) -> None:
        """Update every parameter in place from its ``grad``: one optimisation step."""
        for group in self.param_groups:
            for p in group["params"]:
                grad = -p.grad if group["maximize"] else p.grad
                if group["weight_decay"] != 0:
                    if self._decoupled_weight_decay:
                        p.data *= 1 - group["lr"] * group["weight_decay"]
                    else:
                        grad = grad + group["weight_decay"] * p.data
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {"step": 0, **self._init_state(p.data, group)}
                state["step"] += 1
                self._update(p.data, grad, state, group)

    def zero_grad(self) -> None:
        """Set the gradient of every parameter to zero in place."""
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad()

    def state_dict(self) -> dict[str, Any]:
        """Copies of the hyper-parameters and state: only ndarrays, numbers, strings, lists, dicts.

        ``{"param_groups": [{"lr": ..., "params": [0, 1]}, ...],
        "state": {0: {"step": 3, "exp_avg": ndarray, ...}, ...}}``; parameters are numbered in
        group order, as in torch. A parameter that never took a step has no state entry.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            saved = {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
            saved["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(saved)
        state = {
            index[id(p)]: {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in s.items()}
            for p, s in self.state.items()
        }
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyper-parameters and state from ``state_dict()`` output, checking every shape.

        State keys may be ints or their strings (as JSON writes them); arrays are copied and cast
        to the parameter's dtype. Nothing changes when a ValueError is raised.
        """
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"param_groups", "state"}:
            keys = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict)
            raise ValueError(f"{name}: expected keys ['param_groups', 'state'], got {keys}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}: got {len(saved_groups)} parameter groups, "
                f"expected {len(self.param_groups)}"
            )
        new_groups, by_index = [], {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}: parameter group {i} has {len(saved['params'])} parameters, "
                    f"expected {len(group['params'])}"
                )
            new = {**group, **{k: _plain(v) for k, v in saved.items() if k != "params"}}
            new["params"] = group["params"]
            self._validate(new)
            new_groups.append(new)
            for index, p in zip(saved["params"], group["params"], strict=True):
                by_index[int(index)] = (p, new)
        new_state = {}
        for key, saved in state_dict["state"].items():
            if not str(key).isdigit() or int(key) not in by_index:
                raise ValueError(
                    f"{name}: state for unknown parameter index {key!r}, "
                    f"expected one of {sorted(by_index)}"
                )
            p, group = by_index[int(key)]
            new_state[p] = self._load_param_state(saved, p, group, f"{name}: parameter {key}")
        for group, new in zip(self.param_groups, new_groups, strict=True):
            group.update(new)
        self.state = new_state

    def _load_param_state(
        self, saved: Mapping[str, Any], p: Parameter, group: ParamGroup, where: str
    ) -> dict[str, Any]:
        """Check one parameter's saved state against what this optimizer keeps, and copy it."""
        expected = {"step", *self._init_state(p.data, group)}
        if set(saved) != expected:
            raise ValueError(f"{where} has state keys {sorted(saved)}, expected {sorted(expected)}")
        step = saved["step"]
        if np.ndim(step) != 0 or not np.issubdtype(np.asarray(step).dtype, np.integer) or step < 0:
            raise ValueError(f"{where} has step={step!r}, expected an integer >= 0")
        state: dict[str, Any] = {"step": int(step)}
        for key in sorted(expected - {"step"}):
            if np.shape(saved[key]) != p.shape:
                raise ValueError(
                    f"{where} has {key!r} of shape {np.shape(saved[key])}, expected {p.shape}"
                )
            state[key] = np.array(saved[key], dtype=p.dtype)
        return state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({args})"
