"""Helpers of the ONNX tests: one-node models built with onnx.helper, onnxruntime as the oracle,
and torchvision's model definitions without its compiled operators."""

from __future__ import annotations

import importlib.util
import io
import sys
import types
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
helper, TensorProto = onnx.helper, onnx.TensorProto


def node_model(op_type, inputs, outputs=1, *, opset=17, constants=None, **attrs):
    """A model of one ``op_type`` node. ``inputs`` is a list of (name, array) run-time inputs,
    (name, array, "const") initializers, or "" for an omitted optional input."""
    graph_inputs, initializers, names = [], [], []
    for entry in inputs:
        if entry == "":
            names.append("")
            continue
        name, value, *kind = entry
        value = np.asarray(value)
        names.append(name)
        if kind:
            initializers.append(onnx.numpy_helper.from_array(value, name))
        else:
            element = helper.np_dtype_to_tensor_dtype(value.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, element, value.shape))
    out_names = [f"out{i}" for i in range(outputs)]
    node = helper.make_node(op_type, names, out_names, name=f"the_{op_type.lower()}", **attrs)
    graph = helper.make_graph(
        [node],
        op_type,
        graph_inputs,
        [onnx.ValueInfoProto(name=n) for n in out_names],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    return model


def runtime_inputs(model) -> list[str]:
    """The names of the graph inputs that are not initializers, in order."""
    init = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in init]


def run_ort(model, *arrays) -> list[np.ndarray]:
    """onnxruntime's outputs for ``arrays`` fed to the runtime inputs in order."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, arrays, strict=True)))


def import_torchvision_models():
    """torchvision.models without torchvision's compiled operators (the PyPI wheel is built
    for the CUDA torch; the model definitions need none of its ops)."""
    pytest.importorskip("torch")
    if "torchvision.models" in sys.modules:
        return sys.modules["torchvision.models"]
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        pytest.skip("torchvision is not installed")
    if "torchvision" not in sys.modules:
        package = types.ModuleType("torchvision")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["torchvision"] = package
    import torchvision.models

    return torchvision.models


def randomize_batch_norms_(model, seed: int = 0):
    """Non-trivial running statistics and affine parameters in every torch batch norm."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=generator))
                m.bias.copy_(0.2 * torch.randn(c, generator=generator))
    return model


def torch_to_onnx(model, shape, **options) -> bytes:
    """torch.onnx.export (the TorchScript exporter) of ``model`` in eval mode, batch dynamic
    unless ``dynamic_axes`` says otherwise."""
    import torch

    model.eval()
    options.setdefault("dynamic_axes", {"x": {0: "batch"}, "y": {0: "batch"}})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(shape),),
            buffer,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            **options,
        )
    return buffer.getvalue()
