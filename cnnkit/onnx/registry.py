"""The operator registry: one small converter per ONNX operator, from a node to a cnnkit layer.

A converter takes a :class:`NodeContext` (the node, its attributes, the constant values of its
inputs) and returns the layer that computes the node, and which of the node's inputs the layer
reads at run time (by default the first): ``return layer`` or ``return layer, (0, 1)``. Inputs
the converter bakes into the layer (a convolution's weights) are not listed. The loader runs a
node whose inputs are all constants once, at load time (constant folding), so a converter never
has to tell the two cases apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np
import onnx
from onnx import helper, numpy_helper

from cnnkit.nn.module import Module, Parameter

Converter = Callable[["NodeContext"], "Module | tuple[Module, tuple[int, ...]]"]
CONVERTERS: dict[str, Converter] = {}


class UnsupportedOperatorError(ValueError):
    """An ONNX operator, or an attribute value of one, that cnnkit.onnx cannot import."""


def register(*op_types: str) -> Callable[[Converter], Converter]:
    """Decorator registering a converter for the ONNX operators ``op_types`` (default domain)."""

    def decorator(converter: Converter) -> Converter:
        for op_type in op_types:
            if op_type in CONVERTERS:
                raise ValueError(f"ONNX operator {op_type!r} already has a converter")
            CONVERTERS[op_type] = converter
        return converter

    return decorator


def supported_operators() -> list[str]:
    """The ONNX operators that cnnkit.onnx.load imports, sorted."""
    return sorted(CONVERTERS)


def node_label(node: onnx.NodeProto, index: int) -> str:
    """How messages name a node: its name, or its position and first output when it has none."""
    if node.name:
        return repr(node.name)
    return f"#{index} (output {node.output[0]!r})" if node.output else f"#{index}"


@dataclass
class NodeContext:
    """One node as a converter sees it: attributes, inputs, their constant values, the opset.

    ``constants`` maps value names to arrays known at load time (initializers, Constant nodes,
    folded results); ``initializers`` names those that the file stores as initializers, which
    become trainable parameters where a layer holds them; ``shapes`` the shapes that ONNX shape
    inference found (None for a dynamic dimension); ``float_output`` whether the node's outputs
    hold floats (else it is shape arithmetic on integers); ``consumed`` the values that some
    node reads or the graph outputs. ``dtype`` is the float type of the imported model;
    ``outputs`` the node outputs the layer computes (converters may drop unread optional ones).
    """

    node: onnx.NodeProto
    index: int
    opset: int
    dtype: np.dtype
    constants: dict[str, np.ndarray]
    initializers: set[str]
    shapes: dict[str, tuple[int | None, ...]] = field(default_factory=dict)
    float_output: bool = True
    consumed: frozenset[str] = frozenset()
    attrs: dict = field(init=False)
    outputs: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.outputs = list(self.node.output)
        self.attrs = {}
        for attribute in self.node.attribute:
            value = helper.get_attribute_value(attribute)
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, onnx.TensorProto):
                value = numpy_helper.to_array(value)
            elif isinstance(value, list) and value and isinstance(value[0], bytes):
                value = [v.decode() for v in value]
            self.attrs[attribute.name] = value

    @property
    def op_type(self) -> str:
        """The node's operator."""
        return self.node.op_type

    @property
    def label(self) -> str:
        """How messages name the node."""
        return node_label(self.node, self.index)

    def fail(self, message: str) -> NoReturn:
        """Raise the one-line error for an attribute or input this importer cannot take."""
        raise UnsupportedOperatorError(f"ONNX node {self.label} ({self.op_type}): {message}")

    def attr(self, name: str, default=None):
        """The attribute ``name``, or ``default`` when the node does not set it."""
        return self.attrs.get(name, default)

    def ints(self, name: str, default=None) -> tuple[int, ...] | None:
        """An ints attribute as a tuple (``default`` when absent)."""
        value = self.attrs.get(name)
        return default if value is None else tuple(int(v) for v in value)

    def has_input(self, i: int) -> bool:
        """Whether input ``i`` is given (optional inputs may be missing or the empty name)."""
        return i < len(self.node.input) and self.node.input[i] != ""

    def constant(self, i: int) -> np.ndarray | None:
        """The value of input ``i`` if it is known at load time, else None (also when absent)."""
        if not self.has_input(i):
            return None
        return self.constants.get(self.node.input[i])

    def require_constant(self, i: int, what: str) -> np.ndarray:
        """The load-time value of input ``i``; fails when ``what`` is computed at run time."""
        value = self.constant(i)
        if value is None:
            self.fail(f"{what} (input {i}) must be a constant, not computed at run time")
        return value

    def ints_input(self, i: int, what: str, attribute: str | None = None):
        """An int list given as input ``i`` (newer opsets) or as ``attribute`` (older ones)."""
        if self.has_input(i):
            return tuple(int(v) for v in self.require_constant(i, what).reshape(-1))
        return self.ints(attribute) if attribute else None

    def float_array(self, i: int) -> np.ndarray | None:
        """Input ``i``'s constant value in the model's float type (None when absent)."""
        value = self.constant(i)
        return None if value is None else np.asarray(value, dtype=self.dtype)

    def is_initializer(self, i: int) -> bool:
        """Whether input ``i`` is an initializer of the file (a trainable value)."""
        return self.has_input(i) and self.node.input[i] in self.initializers

    def parameter(self, i: int) -> Parameter:
        """A Parameter holding a copy of input ``i``'s constant value in the model's float type."""
        value = self.require_constant(i, "a weight")
        return Parameter(np.array(value, dtype=self.dtype))

    def shape(self, i: int) -> tuple[int | None, ...] | None:
        """Input ``i``'s shape as shape inference found it (None where it is unknown)."""
        if not self.has_input(i):
            return None
        value = self.constant(i)
        if value is not None:
            return value.shape
        return self.shapes.get(self.node.input[i])

    def rank(self, i: int) -> int | None:
        """Input ``i``'s number of dimensions, None when unknown."""
        shape = self.shape(i)
        return None if shape is None else len(shape)

    def single_output(self, what: str) -> None:
        """Keep only the first output; fail when the optional ones after it (``what``) are read
        by another node or are graph outputs (old files declare a Dropout mask nobody reads)."""
        if any(name in self.consumed for name in self.node.output[1:]):
            self.fail(f"the optional {what} output is not supported")
        self.outputs = self.outputs[:1]
