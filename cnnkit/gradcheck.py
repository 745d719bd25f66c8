"""Numerical gradient checking by central differences, in float64.

For a scalar L = sum(f(x) * r) with a fixed random projection r, every checked entry compares the
analytic gradient from the backward pass with (L(x + eps e_i) - L(x - eps e_i)) / (2 eps).
Relative error: |analytic - numeric| / max(|analytic|, |numeric|, floor); below ``floor`` the
comparison is absolute, since a central difference of a gradient that is truly zero is rounding
noise of about 1e-10 rather than zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cnnkit.nn.module import Module


@dataclass
class GradcheckReport:
    """Worst relative error over every checked entry, and which entry it was."""

    max_rel_error: float
    where: str
    analytic: float
    numeric: float
    checked: int
    tolerance: float

    @property
    def passed(self) -> bool:
        """True when the worst relative error is within the tolerance."""
        return self.max_rel_error <= self.tolerance

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"gradcheck {verdict}: worst relative error {self.max_rel_error:.3e} at {self.where} "
            f"(analytic {self.analytic:.6e}, numeric {self.numeric:.6e}; {self.checked} entries "
            f"checked, tolerance {self.tolerance:.0e})"
        )


def _entries(array: np.ndarray, max_per_array: int | None, rng: np.random.Generator):
    if max_per_array is None or array.size <= max_per_array:
        return range(array.size)
    return rng.choice(array.size, size=max_per_array, replace=False)


def _require_float64(name: str, array: np.ndarray) -> None:
    if array.dtype != np.float64:
        raise TypeError(
            f"gradcheck needs float64 arrays, got {name} of dtype {array.dtype} "
            f"(call .to(np.float64) on the model and cast the inputs)"
        )


def gradcheck(
    target: Module | tuple[Callable, Callable],
    *inputs: np.ndarray,
    eps: float = 1e-6,
    tolerance: float = 1e-5,
    max_per_array: int | None = 200,
    seed: int = 0,
    floor: float = 1e-3,
) -> GradcheckReport:
    """Compare a backward pass with central differences for every input (and parameter).

    ``target`` is either a Module (checked with respect to its single input and all of its
    parameters; its random generators are rewound before every call, so dropout masks stay
    fixed) or a pair ``(forward, backward)`` of a functional op, where
    ``forward(*inputs) -> (out, cache)`` and ``backward(dout, cache)`` returns the gradient of
    each input (a tuple, None for inputs without one). At most ``max_per_array`` random entries
    of each array are checked (None checks all). Gradients smaller than ``floor`` in magnitude
    are compared absolutely: their error is divided by ``floor`` instead of by their size.
    """
    rng = np.random.default_rng(seed)
    inputs = [np.array(x, copy=True) for x in inputs]
    for i, x in enumerate(inputs):
        _require_float64(f"input {i}", x)
    if isinstance(target, Module):
        if len(inputs) != 1:
            raise ValueError(f"gradcheck of a Module takes exactly one input, got {len(inputs)}")
        named = list(target.named_parameters())
        for name, p in named:
            _require_float64(f"parameter {name}", p.data)
        arrays = [("input", inputs[0])] + [(name, p.data) for name, p in named]
        generators = [rng for _, rng in target.named_generators()]
        states = [g.bit_generator.state for g in generators]

        def evaluate():
            for generator, state in zip(generators, states, strict=True):
                generator.bit_generator.state = state  # the same dropout mask every call
            return target(inputs[0])

        def analytic(projection):
            target.zero_grad()
            evaluate()
            dx = target.backward(projection)
            return [dx] + [p.grad.copy() for _, p in named]
    else:
        forward, backward = target
        arrays = [(f"input {i}", x) for i, x in enumerate(inputs)]

        def evaluate():
            return forward(*inputs)[0]

        def analytic(projection):
            _, cache = forward(*inputs)
            grads = backward(projection, cache)
            return list(grads) if isinstance(grads, tuple) else [grads]

    projection = rng.standard_normal(np.shape(evaluate()))
    grads = analytic(projection)
    worst = GradcheckReport(0.0, "nowhere", 0.0, 0.0, 0, tolerance)
    for (name, array), grad in zip(arrays, grads, strict=True):
        if grad is None:
            continue
        flat, flat_grad = array.reshape(-1), np.asarray(grad).reshape(-1)
        for index in _entries(array, max_per_array, rng):
            original = flat[index]
            flat[index] = original + eps
            plus = float(np.sum(evaluate() * projection))
            flat[index] = original - eps
            minus = float(np.sum(evaluate() * projection))
            flat[index] = original
            numeric = (plus - minus) / (2 * eps)
            exact = float(flat_grad[index])
            error = abs(exact - numeric) / max(abs(exact), abs(numeric), floor)
            worst.checked += 1
            if error > worst.max_rel_error:
                position = np.unravel_index(index, array.shape)
                worst.max_rel_error, worst.analytic, worst.numeric = error, exact, numeric
                worst.where = f"{name}[{', '.join(str(int(p)) for p in position)}]"
    return worst


def assert_gradcheck(target, *inputs: np.ndarray, **options) -> GradcheckReport:
    """Run :func:`gradcheck` and raise AssertionError with the report when it fails."""
    report = gradcheck(target, *inputs, **options)
    if not report.passed:
        raise AssertionError(str(report))
    return report


__all__: Sequence[str] = ["GradcheckReport", "assert_gradcheck", "gradcheck"]
