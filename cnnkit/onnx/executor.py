"""The module an imported ONNX graph becomes: its nodes as cnnkit layers, run in graph order.

Every node of the graph is one step: a layer (a registered child module, under a dotted name),
or a shape computation (integer tensors such as those torch emits for ``x.view(n, -1)``, which
are run but are not part of the module tree). Forward runs the steps in the graph's topological
order, each reading the values named by its inputs (the empty name, an omitted optional input,
reads None). Backward runs the layers that took part in the forward pass in reverse order: each
layer's backward gets dL/d(its output) (a tuple for several outputs, as cnnkit.nn.Split takes
it) and returns dL/d(its input) (a tuple for several inputs), and where a value feeds several
layers (fan-out: a residual's skip, a concatenation's branches) their gradients add up,
dL/dv = sum over consumers. Layers whose
inputs depend on neither a graph input nor a parameter, and the shape computations, run under
no_grad and take no part in backward. Under no_grad, a convolution whose one consumer is a
ReLU, ReLU6 or Hardtanh (ONNX Relu and Clip) runs with that activation as its clamp, one pass
over the output fewer (cnnkit.nn.fusion, bit for bit the two layers one by one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cnnkit.nn import fusion
from cnnkit.nn.grad_mode import is_grad_enabled, no_grad
from cnnkit.nn.module import Module


class Scope(Module):
    """A name in the module tree (``layer1`` in ``layer1.0.conv1``) that only holds children."""

    def forward(self, *args):
        raise RuntimeError(
            f"Scope is a namespace of imported layers ({', '.join(self._modules)}); run the "
            "OnnxGraph that holds it instead"
        )


@dataclass(frozen=True)
class Step:
    """One node: the layer (or shape computation) and the names of the values it reads/writes."""

    module: Module
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    node: str
    is_layer: bool
    has_parameters: bool


@dataclass
class _Pass:
    """What one forward call kept for backward: the steps that ran with gradients, the shape
    and dtype of each of their outputs, and whether they returned a tuple."""

    steps: list[tuple[Step, tuple[tuple[tuple[int, ...], np.dtype], ...], bool]]
    needs_grad: set[str]
    inputs: list[tuple[str, tuple[int, ...], np.dtype]]


class OnnxGraph(Module):
    """An ONNX graph run node by node on cnnkit layers, with a backward pass (module docstring).

    ``input_names``/``output_names`` are the graph's; forward takes one array per input (in that
    order, or by name as keyword arguments) and returns one array, or a tuple when the graph has
    several outputs. Backward takes dL/d(output) (a tuple for several outputs) and returns
    dL/d(input) (a tuple for several inputs). ``input_shapes`` holds the declared input shapes,
    with None for a dynamic dimension such as the batch size.
    """

    max_cached_calls = 64

    def __init__(
        self,
        steps: Sequence[Step],
        constants: Mapping[str, np.ndarray],
        input_names: Sequence[str],
        output_names: Sequence[str],
        input_shapes: Sequence[tuple[int | None, ...]] = (),
    ):
        super().__init__()
        self.steps = list(steps)
        self.constants = dict(constants)
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.input_shapes = [tuple(s) for s in input_shapes]
        self._passes: list[_Pass] = []
        self._activation_after = _sole_activations(self.steps, self.output_names)

    def _bind(self, args, kwargs) -> dict[str, np.ndarray]:
        if len(args) + len(kwargs) != len(self.input_names):
            raise TypeError(
                f"OnnxGraph expected {len(self.input_names)} input(s) "
                f"({', '.join(self.input_names)}), got {len(args) + len(kwargs)}"
            )
        values = dict(zip(self.input_names, args, strict=False))
        for name, value in kwargs.items():
            if name not in self.input_names or name in values:
                raise TypeError(
                    f"OnnxGraph got an unexpected or repeated input {name!r} (inputs: "
                    f"{', '.join(self.input_names)})"
                )
            values[name] = value
        for name, value in values.items():
            if isinstance(value, np.generic):
                values[name] = value = np.asarray(value)
            if not isinstance(value, np.ndarray):
                raise TypeError(
                    f"OnnxGraph input {name!r} must be a numpy.ndarray, got {type(value).__name__}"
                )
        return values

    def forward(self, *args, **kwargs):
        inputs = self._bind(args, kwargs)
        values = {"": None, **self.constants, **inputs}
        recording = is_grad_enabled()
        needs_grad = {n for n, v in inputs.items() if v.dtype.kind == "f"} if recording else set()
        ran: list = []
        fused: set[int] = set()
        for index, step in enumerate(self.steps):
            if index in fused:
                continue
            arguments = [values[name] for name in step.inputs]
            follower = self._activation_after.get(index)
            if follower is not None and fusion.clamps(step.module, self.steps[follower].module):
                activation = self.steps[follower]
                out = fusion.convolve_and_clamp(step.module, activation.module, *arguments)
                values[step.outputs[0]] = values[activation.outputs[0]] = out
                fused.add(follower)
                continue
            with_grad = (
                recording
                and step.is_layer
                and (step.has_parameters or any(name in needs_grad for name in step.inputs))
            )
            if with_grad or not recording:
                out = step.module(*arguments)
            else:
                with no_grad():
                    out = step.module(*arguments)
            outs = out if isinstance(out, tuple) else (out,)
            for name, value in zip(step.outputs, outs, strict=True):
                values[name] = value
            if with_grad:
                needs_grad.update(step.outputs)
                shapes = tuple((np.shape(o), np.result_type(o)) for o in outs)
                ran.append((step, shapes, isinstance(out, tuple)))
        if recording:
            self._passes.append(
                _Pass(ran, needs_grad, [(n, v.shape, v.dtype) for n, v in inputs.items()])
            )
            del self._passes[: -self.max_cached_calls]
        outputs = tuple(values[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs

    def backward(self, dout):
        if not self._passes:
            raise RuntimeError(
                "OnnxGraph.backward called before forward (or after a forward under no_grad)"
            )
        record = self._passes.pop()
        douts = dout if len(self.output_names) > 1 else (dout,)
        if len(douts) != len(self.output_names):
            raise ValueError(
                f"OnnxGraph.backward expected {len(self.output_names)} gradients, got {len(douts)}"
            )
        grads: dict[str, np.ndarray] = {}
        for name, grad in zip(self.output_names, douts, strict=True):
            _accumulate(grads, name, grad)
        for step, shapes, pieces in reversed(record.steps):
            received = [
                grads.pop(name) if name in grads else np.zeros(shape, dtype=dtype)
                for name, (shape, dtype) in zip(step.outputs, shapes, strict=True)
            ]
            dins = step.module.backward(tuple(received) if pieces else received[0])
            dins = dins if isinstance(dins, tuple) else (dins,)
            for name, grad in zip(step.inputs, dins, strict=True):
                if grad is not None and name in record.needs_grad:
                    _accumulate(grads, name, grad)
        dx = tuple(
            grads[name] if name in grads else np.zeros(shape, dtype=dtype)
            for name, shape, dtype in record.inputs
        )
        return dx[0] if len(dx) == 1 else dx

    def to(self, dtype) -> OnnxGraph:
        """Cast parameters, buffers and the graph's floating constants to float32 or float64."""
        super().to(dtype)
        for name, value in self.constants.items():
            if value.dtype.kind == "f":
                self.constants[name] = value.astype(dtype)
        return self

    def layers(self) -> list[tuple[str, Module]]:
        """(dotted name, layer) of every node that is a layer, in graph order."""
        names = {id(m): n for n, m in self.named_modules()}
        return [(names[id(s.module)], s.module) for s in self.steps if s.is_layer]

    def extra_repr(self) -> str:
        return f"inputs={self.input_names}, outputs={self.output_names}"


def _accumulate(grads: dict[str, np.ndarray], name: str, grad: np.ndarray) -> None:
    """grads[name] += grad, never in place (a layer may hand back an array it still uses)."""
    grads[name] = grad if name not in grads else grads[name] + grad


def _sole_activations(steps: Sequence[Step], output_names: Sequence[str]) -> dict[int, int]:
    """{index of a step: index of the activation step that alone reads its one output} where
    the output is not also a graph output and that activation can be a clamp."""
    readers: dict[str, list[int]] = {}
    for index, step in enumerate(steps):
        for name in step.inputs:
            readers.setdefault(name, []).append(index)
    pairs = {}
    for index, step in enumerate(steps):
        if len(step.outputs) != 1 or step.outputs[0] in output_names:
            continue
        found = readers.get(step.outputs[0], [])
        if len(found) == 1 and fusion.activation_clamp(steps[found[0]].module) is not None:
            pairs[index] = found[0]
    return pairs
