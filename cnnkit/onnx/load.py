"""cnnkit.onnx.load: an ONNX file becomes an OnnxGraph of cnnkit layers, in eval mode.

The file is read once (never written). ONNX shape inference runs on the in-memory copy to learn
the rank of every value. Then each node, in the graph's order, goes through the converter of
its operator (cnnkit.onnx.ops): a node whose inputs are all known at load time is computed
right away (constant folding: the Shape/Gather/Concat arithmetic on constant shapes, Constant
nodes); every other node becomes a step of the graph. Steps that produce floating-point values
are layers, named (cnnkit.onnx.naming) and placed in the module tree; the others compute
integer shapes at run time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper, shape_inference

from cnnkit.nn.grad_mode import no_grad
from cnnkit.nn.module import Module, check_dtype
from cnnkit.onnx import ops  # noqa: F401 (registers the converters)
from cnnkit.onnx.executor import OnnxGraph, Scope, Step
from cnnkit.onnx.naming import LayerName, layer_paths
from cnnkit.onnx.registry import (
    CONVERTERS,
    NodeContext,
    UnsupportedOperatorError,
    node_label,
)

DEFAULT_DOMAINS = ("", "ai.onnx")
BATCHES_TRACKED_KEY = "cnnkit.num_batches_tracked"
"""metadata_props entry where cnnkit.onnx.export keeps each batch norm's num_batches_tracked."""


class NotOnnxError(ValueError):
    """A file that does not hold an ONNX model."""


def read_model(source) -> onnx.ModelProto:
    """The ModelProto in ``source`` (a path, bytes or a ModelProto), refusing what is not ONNX."""
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (bytes, bytearray)):
        data, where, base = bytes(source), "the given data", None
    else:
        path = Path(os.fspath(source))
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist")
        data, where, base = path.read_bytes(), repr(str(path)), path.parent
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise NotOnnxError(f"{where} is not an ONNX model ({_one_line(error)})") from None
    if model.ir_version < 1 or not model.graph.output or not model.opset_import:
        raise NotOnnxError(
            f"{where} is not an ONNX model (no IR version, graph outputs or opset imports)"
        )
    if base is not None and any(_is_external(t) for t in model.graph.initializer):
        onnx.external_data_helper.load_external_data_for_model(model, str(base))
    return model


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:200] or type(error).__name__


def _is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return entry.version
    raise NotOnnxError("the model imports no version of the default ONNX operator set")


SMALL_CONSTANT = 1024
"""Initializers of at most this many elements keep their values for shape inference (the shape
vectors that Reshape and friends read); larger ones (weights) only their types and shapes."""


def _weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its large initializers turned into typed graph inputs: shape inference
    gives the same shapes and does not serialise every weight."""
    graph = model.graph
    small = [t for t in graph.initializer if np.prod(t.dims) <= SMALL_CONSTANT]
    large = [
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in graph.initializer
        if np.prod(t.dims) > SMALL_CONSTANT
    ]
    known = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in known] + large
    light = onnx.helper.make_graph(graph.node, graph.name, inputs, graph.output, small)
    return onnx.helper.make_model(
        light, opset_imports=model.opset_import, ir_version=model.ir_version
    )


def _value_types(model: onnx.ModelProto) -> dict[str, tuple[int, tuple | None]]:
    """{value name: (ONNX element type, shape with None for unknown dims)} after inference."""
    try:
        inferred = shape_inference.infer_shapes(_weightless(model))
    except Exception:  # inference is a help, not a requirement: unknown types stay unknown
        inferred = model
    graph = inferred.graph
    types = {}
    for info in [*graph.output, *graph.input, *graph.value_info]:  # inferred types win
        tensor = info.type.tensor_type
        if not info.type.HasField("tensor_type"):
            continue
        shape = None
        if tensor.HasField("shape"):
            dims = tensor.shape.dim
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        types[info.name] = (tensor.elem_type, shape)
    return types


def _is_float(elem_type: int) -> bool:
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).kind == "f"


def _as_model_dtype(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return value.astype(dtype) if value.dtype.kind == "f" else value


def load(source, dtype=np.float32) -> OnnxGraph:
    """Import an ONNX model (a file path, bytes or an onnx.ModelProto) as a cnnkit module.

    Every node becomes a cnnkit layer (named parameters, a backward pass) or a shape computation;
    the result is in eval mode. ``dtype`` is the float type of the parameters and of the
    computation (float32, or float64 for gradient checks). An operator without a converter, or
    an attribute value a converter does not take, raises UnsupportedOperatorError naming the
    operator and the node; a file that is not ONNX raises NotOnnxError.
    """
    dtype = check_dtype(dtype)
    model = read_model(source)
    graph = model.graph
    opset = _opset(model)
    types = _value_types(model)
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constants = dict(initializers)
    shapes = {name: shape for name, (_, shape) in types.items() if shape is not None}
    inputs = [i for i in graph.input if i.name not in initializers]
    for value in inputs:
        _check_input_type(value, types)
    steps, names = [], []
    consumed = frozenset(
        [name for node in graph.node for name in node.input] + [o.name for o in graph.output]
    )
    for index, node in enumerate(graph.node):
        is_layer = any(_is_float(types[o][0]) if o in types else True for o in node.output if o)
        ctx = NodeContext(
            node, index, opset, dtype, constants, set(initializers), shapes, is_layer, consumed
        )
        module, runtime = _convert(ctx)
        present = [name for name in node.input if name]
        if all(name in constants for name in present):
            _fold(ctx, module, runtime)
            continue
        held = _held_initializers(ctx, module, runtime)
        steps.append(
            Step(
                module,
                tuple(node.input[i] if i < len(node.input) else "" for i in runtime),
                tuple(ctx.outputs),
                node.name,
                is_layer,
                bool(module.parameters()),
            )
        )
        if is_layer:
            names.append(LayerName(node.name, node.op_type, index, held))
    layers = [s for s in steps if s.is_layer]
    read = {name for step in steps for name in step.inputs}
    read.update(o.name for o in graph.output)
    result = OnnxGraph(
        steps,
        {n: _as_model_dtype(v, dtype) for n, v in constants.items() if n in read},
        [i.name for i in inputs],
        [o.name for o in graph.output],
        [types.get(i.name, (0, None))[1] or () for i in inputs],
    )
    for path, step in zip(layer_paths(names), layers, strict=True):
        _place(result, path, step.module)
    _restore_batches_tracked(result, model)
    result.metadata = {
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": opset,
        "ir_version": model.ir_version,
        "properties": {entry.key: entry.value for entry in model.metadata_props},
    }
    return result.eval()


def _check_input_type(value: onnx.ValueInfoProto, types) -> None:
    """Refuse graph inputs of element types cnnkit does not compute in (float16, bfloat16, ...)."""
    elem_type = types.get(value.name, (value.type.tensor_type.elem_type, None))[0]
    if not value.type.HasField("tensor_type"):
        raise TypeError(f"ONNX input {value.name!r} is not a tensor (sequences are not supported)")
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type) if elem_type else None
    if dtype is not None and dtype.kind not in "biu" and dtype not in (np.float32, np.float64):
        name = onnx.TensorProto.DataType.Name(elem_type)
        raise TypeError(
            f"ONNX input {value.name!r} has element type {name}: cnnkit computes in float32 "
            "or float64 (and takes integer and boolean tensors)"
        )


def _convert(ctx: NodeContext) -> tuple[Module, tuple[int, ...]]:
    node = ctx.node
    if node.domain not in DEFAULT_DOMAINS or node.op_type not in CONVERTERS:
        domain = f" of domain {node.domain!r}" if node.domain not in DEFAULT_DOMAINS else ""
        raise UnsupportedOperatorError(
            f"ONNX operator {node.op_type!r}{domain} (node {node_label(node, ctx.index)}) is not "
            "supported by cnnkit.onnx (see cnnkit.onnx.supported_operators())"
        )
    result = CONVERTERS[node.op_type](ctx)
    return result if isinstance(result, tuple) else (result, (0,))


def _fold(ctx: NodeContext, module: Module, runtime: tuple[int, ...]) -> None:
    """Compute a node whose inputs are all constants now, and keep its outputs as constants."""
    node = ctx.node
    module.eval()  # a folded Dropout is the identity
    arguments = [ctx.constants[node.input[i]] if ctx.has_input(i) else None for i in runtime]
    with no_grad():
        out = module(*arguments)
    outs = out if isinstance(out, tuple) else (out,)
    for name, value in zip(ctx.outputs, outs, strict=True):
        if name:
            ctx.constants[name] = np.asarray(value)


def _held_initializers(ctx, module, runtime) -> tuple[tuple[str, str], ...]:
    """(initializer, attribute) for each initializer ``module`` holds, matched by name suffix
    ("layer1.0.bn1.running_mean" -> running_mean); () when one of them has no such attribute."""
    own = set(module._parameters) | set(module._buffers)
    pairs = []
    for i, name in enumerate(ctx.node.input):
        if i in runtime or name not in ctx.initializers:
            continue
        attribute = name.rsplit(".", 1)[-1]
        if attribute not in own:
            return ()
        pairs.append((name, attribute))
    return tuple(pairs)


def _place(root: Module, path: str, module: Module) -> None:
    """Register ``module`` at the dotted ``path`` under ``root``, making Scopes on the way."""
    *scopes, leaf = path.split(".")
    parent = root
    for name in scopes:
        child = parent._modules.get(name)
        if child is None:
            child = Scope()
            setattr(parent, name, child)
        parent = child
    setattr(parent, leaf, module)


def _restore_batches_tracked(graph: OnnxGraph, model: onnx.ModelProto) -> None:
    for entry in model.metadata_props:
        if entry.key == BATCHES_TRACKED_KEY:
            counts = json.loads(entry.value)
            for name, module in graph.named_modules():
                if name in counts and "num_batches_tracked" in module._buffers:
                    module._buffers["num_batches_tracked"][...] = counts[name]
