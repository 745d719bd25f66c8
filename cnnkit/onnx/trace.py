"""Tracing a cnnkit model into an ONNX graph: named arrays flow through the forward pass.

The model runs once, in eval mode under no_grad, on an input that is a :class:`Traced` array
(an ndarray carrying the name of the ONNX value it stands for). Every layer that has an emitter
(cnnkit.onnx.emit) is wrapped for the run: it computes its output on plain arrays as usual,
then writes the ONNX nodes that compute the same thing and hands on a Traced output. Containers
(Sequential, residual blocks, a zoo model's own forward) run unchanged; the residual sums they
compute with ``+``, ``-``, ``*``, ``/`` on Traced arrays become Add, Sub, Mul, Div nodes
(``__array_ufunc__``). Any other operation on a Traced array gives an unnamed array, and a layer
or output that receives one fails, so the graph never silently misses a computation.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

ARITHMETIC = {np.add: "Add", np.subtract: "Sub", np.multiply: "Mul", np.divide: "Div"}


class ExportError(ValueError):
    """A model, layer or operation that cnnkit.onnx.export cannot write as ONNX."""


class Traced(np.ndarray):
    """An ndarray standing for the ONNX value ``onnx_name`` (None once an operation changed it)."""

    onnx_name: str | None = None
    builder: GraphBuilder | None = None

    def __array_finalize__(self, obj) -> None:
        self.onnx_name = None
        self.builder = getattr(obj, "builder", None)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [x.view(np.ndarray) if isinstance(x, Traced) else x for x in inputs]
        if "out" in kwargs:
            raise ExportError(
                f"cnnkit.onnx.export cannot follow the in-place numpy operation {ufunc.__name__} "
                "on a traced value (write it as a layer, or as a = a + b)"
            )
        result = getattr(ufunc, method)(*plain, **kwargs)
        builder = next(x.builder for x in inputs if isinstance(x, Traced))
        if method != "__call__" or ufunc not in ARITHMETIC:
            return _unnamed(result, builder)
        names = [builder.value_name(x) for x in inputs]
        return builder.traced(result, builder.node(ARITHMETIC[ufunc], names))

    def __array_function__(self, func, types, args, kwargs):
        plain = _plain(args)
        return _unnamed(func(*plain, **_plain(kwargs)), self.builder)


def _plain(value):
    """``value`` with every Traced array inside it (lists, tuples, dicts) as a plain ndarray."""
    if isinstance(value, Traced):
        return value.view(np.ndarray)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _unnamed(result, builder):
    """The result of an operation the trace does not follow: arrays come back as unnamed
    Traced arrays, so that a layer or the output receiving one fails instead of reading a
    constant."""
    if isinstance(result, np.ndarray):
        result = result.view(Traced)
        result.builder = builder
    return result


class GraphBuilder:
    """The nodes and initializers of the graph being traced, and the scope of the current layer.

    ``scope`` is the dotted name of the layer whose nodes are being written; node names follow
    torch's form ("/layer1/0/conv1/Conv"), so that cnnkit.onnx.load names the layers back.
    """

    def __init__(self, dtype: np.dtype, opset: int) -> None:
        self.dtype, self.opset = np.dtype(dtype), opset
        self.nodes: list = []
        self.initializers: list[TensorProto] = []
        self.scope = ""
        self.inside = False  # True while a traced layer computes (its sub-layers emit nothing)
        self._names: set[str] = set()

    def unique(self, name: str) -> str:
        """``name``, or ``name_k`` with the first k that no value or node has taken yet."""
        candidate, k = name, 0
        while candidate in self._names:
            k += 1
            candidate = f"{name}_{k}"
        self._names.add(candidate)
        return candidate

    def node(self, op_type: str, inputs, outputs: int = 1, **attrs) -> str | list[str]:
        """Append a node of ``op_type`` reading ``inputs``; return its output name(s)."""
        base = "/".join(p for p in ["", *self.scope.split("."), op_type])
        name = self.unique(base if self.scope else f"/{op_type}")
        names = [self.unique(f"{name}_output_{k}") for k in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=name, **attrs))
        return names[0] if outputs == 1 else names

    def initializer(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` as the initializer ``name`` (a parameter's state_dict key)."""
        name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def constant(self, array, dtype=None) -> str:
        """A constant value (a shape, a scalar operand) as an initializer of its own, of
        ``dtype`` when given, else of its own type with floats in the model's."""
        value = np.asarray(array, dtype=dtype)
        if dtype is None and value.dtype.kind == "f":
            value = value.astype(self.dtype)
        scope = self.scope.replace(".", "/")
        return self.initializer(f"/{scope}/Constant" if scope else "/Constant", value)

    def value_name(self, value) -> str:
        """The ONNX name of a Traced value, or a new constant for a plain array or number (an
        operand of +, -, *, /)."""
        if isinstance(value, Traced):
            if value.onnx_name is None:
                raise ExportError(self.unnamed_message())
            return value.onnx_name
        return self.constant(value, dtype=self.dtype)

    def traced(self, array: np.ndarray, name: str) -> Traced:
        """``array`` as a Traced value named ``name``."""
        result = np.asarray(array).view(Traced)
        result.onnx_name, result.builder = name, self
        return result

    def unnamed_message(self) -> str:
        """The error for a layer (or the output) that received a value the trace lost."""
        where = f"layer {self.scope!r}" if self.scope else "the model's output"
        return (
            f"cnnkit.onnx.export: {where} received a value computed by a numpy operation it "
            "cannot follow (only layers and +, -, *, / between them are traced)"
        )

    def tensor_type(self):
        """The ONNX element type of the model's floats."""
        return helper.np_dtype_to_tensor_dtype(self.dtype)
