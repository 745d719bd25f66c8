"""cnnkit.onnx.load's contract: one-line refusals (unsupported operators naming the node, files
that are not ONNX, element types it does not compute in), the file never modified, the module
it returns (named layers, several inputs and outputs, backward, no_grad, summary, Grad-CAM)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from onnx_support import helper, node_model, onnx

import cnnkit as ck
import cnnkit.onnx as ckonnx
from cnnkit.models.summary import summary
from cnnkit.onnx.naming import LayerName, layer_paths
from cnnkit.viz import grad_cam

X = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)


def graph_model(nodes, inputs, outputs, initializers=(), opset=17, **model_options):
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "g",
        [value(n, onnx.TensorProto.FLOAT, None) for n in inputs],
        [value(n, onnx.TensorProto.FLOAT, None) for n in outputs],
        list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **model_options)


def test_unsupported_operator_is_one_line_naming_op_and_node():
    nms = helper.make_node("NonMaxSuppression", ["x"], ["y"], name="detector/nms")
    with pytest.raises(ckonnx.UnsupportedOperatorError) as error:
        ckonnx.load(graph_model([nms], ["x"], ["y"]))
    message = str(error.value)
    assert message == (
        "ONNX operator 'NonMaxSuppression' (node 'detector/nms') is not supported by "
        "cnnkit.onnx (see cnnkit.onnx.supported_operators())"
    )
    unnamed = helper.make_node("Relu", ["x"], ["y"], domain="com.microsoft")
    with pytest.raises(ckonnx.UnsupportedOperatorError, match=r"'Relu' of domain 'com.micro"):
        ckonnx.load(graph_model([unnamed], ["x"], ["y"]))
    with pytest.raises(ckonnx.UnsupportedOperatorError, match=r"node #0 \(output 'y'\)"):
        ckonnx.load(graph_model([helper.make_node("Einsum", ["x"], ["y"])], ["x"], ["y"]))
    assert "Conv" in ckonnx.supported_operators() and "Einsum" not in ckonnx.supported_operators()


def test_unsupported_attribute_names_node_and_value():
    w = np.ones((2, 3, 3, 3, 3), np.float32)
    model = node_model("Conv", [("x", np.ones((1, 3, 4, 4, 4), np.float32)), ("w", w, "c")])
    with pytest.raises(ckonnx.UnsupportedOperatorError) as error:
        ckonnx.load(model)
    assert str(error.value) == (
        "ONNX node 'the_conv' (Conv): only 1-D and 2-D convolutions are supported, got a "
        "weight of (2, 3, 3, 3, 3)"
    )
    runtime_weight = node_model("Conv", [("x", X), ("w", np.ones((2, 3, 3, 3), np.float32))])
    with pytest.raises(ckonnx.UnsupportedOperatorError, match="the weight .input 1. must be a"):
        ckonnx.load(runtime_weight)


@pytest.mark.parametrize(
    "content",
    [b"", b"name,value\n1,2\n", np.random.default_rng(1).bytes(4096), b"PK\x03\x04" + bytes(64)],
    ids=["empty", "csv", "random", "zip"],
)
def test_a_file_that_is_not_onnx_is_refused_in_one_line(content, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ckonnx.NotOnnxError) as error:
        ckonnx.load(path)
    assert str(error.value).startswith(f"{str(path)!r} is not an ONNX model (")
    assert "\n" not in str(error.value)
    assert path.read_bytes() == content


def test_missing_file_and_bad_dtype(tmp_path):
    with pytest.raises(FileNotFoundError, match="ONNX model .*nothing.onnx' does not exist"):
        ckonnx.load(tmp_path / "nothing.onnx")
    model = node_model("Relu", [("x", X)])
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got float16"):
        ckonnx.load(model, dtype=np.float16)
    half = node_model("Relu", [("x", X.astype(np.float16))])
    with pytest.raises(TypeError, match="ONNX input 'x' has element type FLOAT16: cnnkit comp"):
        ckonnx.load(half)


def test_the_model_file_is_never_modified(tmp_path, rng):
    path = tmp_path / "resnet20.onnx"
    ckonnx.export(ck.models.get("resnet20"), path)
    digest, stat = hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path)
    os.chmod(path, 0o444)
    model = ckonnx.load(path)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    model.train()
    model.backward(np.ones_like(model(x)))
    ck.optim.SGD(model.parameters(), lr=0.1).step()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert os.stat(path).st_mtime_ns == stat.st_mtime_ns


def test_several_inputs_and_outputs_and_fan_out():
    """y1 = a * b + a, y2 = relu(a): the gradient of a sums over its three uses."""
    nodes = [
        helper.make_node("Mul", ["a", "b"], ["ab"]),
        helper.make_node("Add", ["ab", "a"], ["y1"]),
        helper.make_node("Relu", ["a"], ["y2"]),
    ]
    model = ckonnx.load(graph_model(nodes, ["a", "b"], ["y1", "y2"]), dtype=np.float64)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3,))
    y1, y2 = model(a, b=b)
    np.testing.assert_allclose(y1, a * b + a)
    g1, g2 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    da, db = model.backward((g1, g2))
    np.testing.assert_allclose(da, g1 * b + g1 + g2 * (a > 0))
    np.testing.assert_allclose(db, (g1 * a).sum(axis=0))
    with pytest.raises(TypeError, match=r"expected 2 input\(s\) \(a, b\), got 1"):
        model(a)
    with pytest.raises(TypeError, match="unexpected or repeated input 'c'"):
        model(a, c=b)
    with pytest.raises(TypeError, match="input 'b' must be a numpy.ndarray, got list"):
        model(a, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="OnnxGraph.backward expected 2 gradients, got 1"):
        model(a, b)
        model.backward((g1,))


def test_backward_needs_a_forward_with_gradients():
    model = ckonnx.load(node_model("Relu", [("x", X)]))
    with pytest.raises(RuntimeError, match="OnnxGraph.backward called before forward"):
        model.backward(X)
    with ck.no_grad():
        model(X)
    with pytest.raises(RuntimeError, match="called before forward .or after a forward under no"):
        model.backward(X)
    first, second = model(X), model(-X)
    np.testing.assert_array_equal(model.backward(np.ones_like(second)), -X > 0)
    np.testing.assert_array_equal(model.backward(np.ones_like(first)), X > 0)


def test_imported_model_is_a_cnnkit_model(tmp_path):
    """Named layers in eval mode, a summary table, Grad-CAM on an imported convolution, and a
    namespace that says what it is when called."""
    path = tmp_path / "vgg.onnx"
    original = ck.models.get("vgg_small").eval()
    ckonnx.export(original, path)
    model = ckonnx.load(path)
    assert not model.training
    names = [name for name, _ in model.layers()]
    assert names[:3] == ["features.0", "features.1", "features.2"]
    table = summary(model, (1, 28, 28))
    assert "features.0" in table and "Conv2d" in table
    image = np.random.default_rng(0).random((1, 28, 28), dtype=np.float32)
    heat, _ = grad_cam(model, image, "features.3")
    np.testing.assert_allclose(heat, grad_cam(original, image, "features.3")[0], atol=1e-5)
    with pytest.raises(RuntimeError, match="Scope is a namespace of imported layers"):
        model.features(X)


def test_layer_paths_from_initializers_and_scopes():
    layers = [
        LayerName("/layer1/layer1.0/conv1/Conv", "Conv", 0, (("layer1.0.conv1.weight", "weight"),)),
        LayerName("/layer1/layer1.0/relu/Relu", "Relu", 1, ()),
        LayerName("/layer1/layer1.0/Add", "Add", 2, ()),
        LayerName("/layer1/layer1.0/relu/Relu", "Relu", 3, ()),
        LayerName("", "Relu", 4, ()),
        LayerName("/fused/Conv", "Conv", 5, (("onnx::Conv_7", "weight"),)),
    ]
    assert layer_paths(layers) == [
        "layer1.0.conv1",
        "layer1.0.relu.Relu",
        "layer1.0.Add",
        "layer1.0.relu.Relu_1",
        "relu_4",
        "fused",
    ]


def test_to_float64_casts_parameters_and_constants():
    """A float32 import cast with .to(float64) computes what a float64 import does, constants
    of the graph included (the 2 of x * 2 + bias)."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Constant", [], ["two"], value_float=2.0),
        helper.make_node("Mul", ["c", "two"], ["y"]),
    ]
    w = onnx.numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32) / 7, "w")
    model = graph_model(nodes, ["x"], ["y"], [w])
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5))
    cast = ckonnx.load(model).to(np.float64)
    np.testing.assert_allclose(cast(x), ckonnx.load(model, dtype=np.float64)(x), rtol=1e-12)
    assert cast(x).dtype == np.float64


def test_under_no_grad_a_convolutions_sole_activation_is_its_clamp(monkeypatch):
    """Conv -> Relu and Conv -> Clip(0, 6) fuse; a Conv read twice (Relu and Add) and a Conv
    whose output is a graph output do not; the outputs equal the layers one by one."""
    from cnnkit.nn import fusion

    rng = np.random.default_rng(1)

    def weight(name, shape):
        return helper.make_tensor(name, onnx.TensorProto.FLOAT, shape, rng.standard_normal(shape))

    bounds = [
        helper.make_tensor(n, onnx.TensorProto.FLOAT, [], [v]) for n, v in [("lo", 0), ("hi", 6)]
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Add", ["r3", "c3"], ["y"]),
        helper.make_node("Conv", ["r2", "w3"], ["z"]),
        helper.make_node("Relu", ["z"], ["r4"]),
    ]
    initializers = [
        weight("w1", [4, 3, 3, 3]),
        weight("b1", [4]),
        weight("w2", [4, 4, 1, 1]),
        weight("w3", [4, 4, 1, 1]),
        *bounds,
    ]
    model = ckonnx.load(graph_model(nodes, ["x"], ["y", "z", "r4"], initializers))
    unfused = model(X)
    calls = []
    real = fusion.convolve_and_clamp
    monkeypatch.setattr(
        fusion,
        "convolve_and_clamp",
        lambda conv, activation, x: (
            calls.append(type(activation).__name__) or real(conv, activation, x)
        ),
    )
    with ck.no_grad():
        fused = model(X)
    assert calls == ["ReLU", "ReLU6"]
    for a, b in zip(fused, unfused, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fused[2], np.maximum(fused[1], 0))  # z itself not clamped
