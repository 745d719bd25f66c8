"""cnnkit.onnx.export: a cnnkit model written as an ONNX file, traced through one forward pass
(cnnkit.onnx.trace), each layer written by its emitter (cnnkit.onnx.emit)."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper

from cnnkit import __version__
from cnnkit.io import atomic_write
from cnnkit.nn.grad_mode import no_grad
from cnnkit.nn.module import Module
from cnnkit.onnx import emit_imported  # noqa: F401 (registers the imported layers' emitters)
from cnnkit.onnx.emit import emitter_for
from cnnkit.onnx.executor import OnnxGraph
from cnnkit.onnx.inputs import DATA_KEY
from cnnkit.onnx.load import BATCHES_TRACKED_KEY
from cnnkit.onnx.trace import ExportError, GraphBuilder, Traced

DEFAULT_OPSET = 17


def _input_shape(model: Module, input_shape) -> tuple[int, ...]:
    if input_shape is None:
        input_shape = getattr(model, "default_input_shape", None)
        if input_shape is None:
            raise ValueError("export needs input_shape=(C, H, W) for a model without one")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {input_shape}")
    return shape


def _model_dtype(model: Module) -> np.dtype:
    for p in model.parameters():
        return p.dtype
    return np.dtype(np.float32)


def _wrap(builder: GraphBuilder, path: str, module: Module):
    """The traced forward of a leaf layer: compute on plain arrays, then emit its nodes."""
    real = type(module).forward.__get__(module)
    emitter = emitter_for(module)

    def forward(*args):
        if builder.inside:
            return real(*args)
        outer, builder.scope = builder.scope, path
        try:
            if emitter is None:
                raise ExportError(
                    f"cnnkit.onnx.export has no ONNX form for layer {path!r} "
                    f"({type(module).__name__})"
                )
            if not all(a is None or isinstance(a, Traced) for a in args):
                raise ExportError(
                    f"cnnkit.onnx.export: layer {path!r} received an array that does not come "
                    "from the model's input"
                )
            names = ["" if a is None else builder.value_name(a) for a in args]
            plain = [a.view(np.ndarray) if isinstance(a, Traced) else a for a in args]
            builder.inside = True
            try:
                out = real(*plain)
            finally:
                builder.inside = False
            written = emitter(builder, module, names, plain, out)
        finally:
            builder.scope = outer
        if isinstance(out, tuple):
            return tuple(builder.traced(o, n) for o, n in zip(out, written, strict=True))
        return builder.traced(out, written)

    return forward


def _scoped(builder: GraphBuilder, path: str, module: Module):
    """The forward of a container, run as usual with ``path`` as the scope of what it writes
    itself (the residual sum of a block is named "/layer1/0/Add")."""
    real = type(module).forward.__get__(module)

    def forward(*args, **kwargs):
        outer, builder.scope = builder.scope, path
        try:
            return real(*args, **kwargs)
        finally:
            builder.scope = outer

    return forward


def _trace(model: Module, shape: tuple[int, ...], builder: GraphBuilder, input_name: str):
    """Run ``model`` on a traced input with every layer wrapped (and, for an imported graph, its
    shape computations too, so that they are written as nodes and the batch stays dynamic, and
    its constants as initializers)."""
    wrapped = [
        (name, m, _wrap if emitter_for(m) or not m._modules else _scoped)
        for name, m in model.named_modules()
    ]
    if isinstance(model, OnnxGraph):
        wrapped += [("", step.module, _wrap) for step in model.steps if not step.is_layer]
    modules = list(model.modules())
    training = [m.training for m in modules]
    constants = getattr(model, "constants", None) if isinstance(model, OnnxGraph) else None
    try:
        if constants is not None:
            model.constants = {
                name: builder.traced(value, builder.initializer(name, value))
                for name, value in constants.items()
            }
        model.eval()
        for name, module, wrapper in wrapped:
            object.__setattr__(module, "forward", wrapper(builder, name, module))
        with no_grad():
            out = model(builder.traced(np.zeros(shape, dtype=builder.dtype), input_name))
    finally:
        if constants is not None:
            model.constants = constants
        for _, module, _ in wrapped:
            module.__dict__.pop("forward", None)
        for module, mode in zip(modules, training, strict=True):
            object.__setattr__(module, "training", mode)
    if not isinstance(out, Traced) or out.onnx_name is None:
        raise ExportError(builder.unnamed_message())
    return out


def _metadata(model: Module) -> dict[str, str]:
    props = {}
    config = getattr(model, "config", None)
    if config:
        props["cnnkit.config"] = json.dumps(config)
    counts = {
        name: int(m._buffers["num_batches_tracked"])
        for name, m in model.named_modules()
        if "num_batches_tracked" in m._buffers and int(m._buffers["num_batches_tracked"])
    }
    if counts:
        props[BATCHES_TRACKED_KEY] = json.dumps(counts)
    return props


def export(
    model: Module,
    path=None,
    input_shape=None,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    input_name: str = "input",
    output_name: str = "output",
    data: dict | None = None,
) -> onnx.ModelProto:
    """Write ``model`` as an ONNX model (to ``path`` when given) and return the ModelProto.

    ``input_shape`` is (C, H, W) or (N, C, H, W) (a zoo model's default_input_shape when
    omitted); the batch dimension is the symbolic "batch" unless ``dynamic_batch`` is False.
    Parameters and buffers become initializers under their state_dict keys, so
    ``cnnkit.onnx.load`` of the file has the same state_dict. The model is traced in eval mode
    (dropout off, batch norm on its running statistics) and left in the mode it was in. The
    result passes onnx.checker.check_model before anything is written, and the file is
    written atomically (a temporary file renamed over ``path``). ``data``, a training run's data
    description (a checkpoint's data metadata), is kept in the file's metadata_props under
    cnnkit.onnx.inputs.DATA_KEY so that imported images are prepared as in training.
    """
    if not isinstance(model, Module):
        raise TypeError(f"export expected a cnnkit Module, got {type(model).__name__}")
    shape = _input_shape(model, input_shape)
    builder = GraphBuilder(_model_dtype(model), opset)
    out = _trace(model, shape, builder, input_name)
    batch = "batch" if dynamic_batch else shape[0]
    element = builder.tensor_type()
    graph = helper.make_graph(
        builder.nodes,
        getattr(model, "config", {}).get("name", type(model).__name__),
        [helper.make_tensor_value_info(input_name, element, [batch, *shape[1:]])],
        [helper.make_tensor_value_info(output_name, element, [batch, *out.shape[1:]])],
        builder.initializers,
    )
    _rename_output(graph, out.onnx_name, output_name)
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="cnnkit",
        producer_version=__version__,
    )
    properties = _metadata(model)
    if data is not None:
        properties[DATA_KEY] = json.dumps(data)
    helper.set_model_props(proto, properties)
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        atomic_write(path, lambda file: file.write(proto.SerializeToString()))
    return proto


def _rename_output(graph: onnx.GraphProto, name: str, output_name: str) -> None:
    """Make the graph's last value carry the name ``output_name`` (an Identity if it is the
    input itself or an initializer)."""
    producers = [n for n in graph.node if name in n.output]
    if not producers:
        graph.node.append(helper.make_node("Identity", [name], [output_name], name="/Identity"))
        return
    for node in graph.node:
        node.output[:] = [output_name if o == name else o for o in node.output]
        node.input[:] = [output_name if i == name else i for i in node.input]
