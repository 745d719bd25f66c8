"""Every supported ONNX operator, one node at a time, against onnxruntime (float32, rtol 1e-5),
with its attribute forms (Conv's auto_pad and asymmetric pads, pools' count_include_pad, the
opset-dependent inputs), and the backward pass of the imported nodes by float64 gradchecks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_support import node_model, run_ort

import cnnkit.onnx as ckonnx
from cnnkit.gradcheck import assert_gradcheck

R = np.random.default_rng(0)


def f32(*shape, scale=1.0):
    return (scale * R.standard_normal(shape)).astype(np.float32)


def i64(values):
    return np.array(values, dtype=np.int64)


def check_node(model, *arrays, rtol=1e-5, atol=1e-6):
    """The imported node's outputs equal onnxruntime's; return the imported graph."""
    expected = run_ort(model, *arrays)
    graph = ckonnx.load(model)
    got = graph(*arrays)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected, strict=True):
        assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
        assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)
    return graph


X = f32(2, 4, 9, 8)
W = f32(6, 4, 3, 3, scale=0.3)
B = f32(6)

CONV_CASES = {
    "pads": dict(pads=[1, 1, 1, 1]),
    "asymmetric pads": dict(pads=[0, 1, 2, 1]),
    "SAME_UPPER stride 2": dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    "SAME_LOWER stride 2": dict(auto_pad="SAME_LOWER", strides=[2, 2]),
    "SAME_LOWER": dict(auto_pad="SAME_LOWER"),
    "VALID": dict(auto_pad="VALID", strides=[1, 2]),
    "dilations": dict(dilations=[2, 1], pads=[2, 1, 2, 1]),
    "strides": dict(strides=[2, 3], pads=[1, 0, 1, 0]),
}


@pytest.mark.parametrize("attrs", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv(attrs):
    check_node(node_model("Conv", [("x", X), ("w", W, "c"), ("b", B, "c")], **attrs), X)


def test_conv_even_kernel_same_and_groups():
    w = f32(4, 2, 2, 4, scale=0.3)
    for auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        model = node_model("Conv", [("x", X), ("w", w, "c")], auto_pad=auto_pad, group=2)
        check_node(model, X)
    depthwise = f32(4, 1, 3, 3)
    check_node(node_model("Conv", [("x", X), ("w", depthwise, "c")], group=4, pads=[1] * 4), X)


def test_conv1d_and_conv_transpose():
    x1 = f32(2, 4, 11)
    model = node_model("Conv", [("x", x1), ("w", f32(3, 4, 3), "c")], pads=[1, 1], strides=[2])
    check_node(model, x1)
    wt = f32(4, 3, 3, 3, scale=0.3)
    for attrs in (
        dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
        dict(dilations=[2, 1], strides=[1, 2]),
    ):
        check_node(
            node_model("ConvTranspose", [("x", X), ("w", wt, "c"), ("b", f32(3), "c")], **attrs), X
        )
    grouped = f32(4, 2, 2, 2, scale=0.3)
    check_node(
        node_model("ConvTranspose", [("x", X), ("w", grouped, "c")], group=2, strides=[2, 2]), X
    )


POOL_CASES = {
    "MaxPool pads": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "MaxPool asymmetric": ("MaxPool", dict(kernel_shape=[3, 2], pads=[0, 1, 1, 0])),
    "MaxPool SAME_UPPER": (
        "MaxPool",
        dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    ),
    "MaxPool SAME_LOWER": (
        "MaxPool",
        dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"),
    ),
    "MaxPool VALID": ("MaxPool", dict(kernel_shape=[2, 3], strides=[2, 1], auto_pad="VALID")),
    "AveragePool exclude pad": (
        "AveragePool",
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0),
    ),
    "AveragePool include pad": (
        "AveragePool",
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
    ),
    "AveragePool SAME_UPPER": (
        "AveragePool",
        dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    ),
    "AveragePool SAME_LOWER include": (
        "AveragePool",
        dict(kernel_shape=[2, 2], auto_pad="SAME_LOWER", count_include_pad=1),
    ),
    "MaxPool ceil_mode": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    "MaxPool ceil pads dilations": (
        "MaxPool",
        dict(kernel_shape=[2, 3], strides=[2, 2], pads=[1, 1, 1, 1], dilations=[2, 2], ceil_mode=1),
    ),
    "AveragePool ceil include pad": (
        "AveragePool",
        dict(
            kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1
        ),
    ),
    "AveragePool ceil exclude pad": (
        "AveragePool",
        dict(
            kernel_shape=[2, 2], strides=[3, 3], pads=[1, 0, 1, 0], ceil_mode=1, count_include_pad=0
        ),
    ),
    "AveragePool asymmetric": (
        "AveragePool",
        dict(kernel_shape=[3, 3], pads=[1, 0, 0, 1], count_include_pad=0),
    ),
}


@pytest.mark.parametrize("op, attrs", POOL_CASES.values(), ids=POOL_CASES.keys())
def test_pool(op, attrs):
    check_node(node_model(op, [("x", X)], **attrs), X)


def test_global_pools_and_batch_norm():
    for op in ("GlobalAveragePool", "GlobalMaxPool"):
        check_node(node_model(op, [("x", X)]), X)
    stats = [
        (n, v, "c") for n, v in zip("sbmv", (f32(4), f32(4), f32(4), 0.5 + R.random(4, np.float32)))
    ]
    check_node(node_model("BatchNormalization", [("x", X), *stats], epsilon=1e-3), X)
    x2 = f32(5, 4)
    check_node(node_model("BatchNormalization", [("x", x2), *stats]), x2)


ACTIVATIONS = {
    "Relu": ({}, []),
    "LeakyRelu": (dict(alpha=0.2), []),
    "Sigmoid": ({}, []),
    "Tanh": ({}, []),
    "HardSwish": ({}, []),
    "HardSigmoid torch": (dict(alpha=1 / 6, beta=0.5), []),
    "HardSigmoid default": ({}, []),
    "Elu": (dict(alpha=0.7), []),
    "Softplus": ({}, []),
    "Mish": ({}, []),
    "Clip relu6": ({}, [np.float32(0), np.float32(6)]),
    "Clip hardtanh": ({}, [np.float32(-0.5), np.float32(0.7)]),
    "Clip min only": ({}, [np.float32(0)]),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation(name):
    attrs, bounds = ACTIVATIONS[name]
    x = f32(3, 4, 5, scale=4)
    consts = [(f"c{i}", v, "c") for i, v in enumerate(bounds)]
    check_node(node_model(name.split()[0], [("x", x), *consts], opset=18, **attrs), x)


def test_gelu_prelu_softmax():
    x = f32(2, 3, 4, 5, scale=2)
    for approximate in ("none", "tanh"):
        check_node(node_model("Gelu", [("x", x)], opset=20, approximate=approximate), x)
    for slope in (f32(3, 1, 1), np.array([0.3], np.float32)):
        check_node(node_model("PRelu", [("x", x), ("s", slope, "c")]), x)
    for op in ("Softmax", "LogSoftmax"):
        for axis in (-1, 1):
            check_node(node_model(op, [("x", x)], axis=axis), x)
        check_node(node_model(op, [("x", x)], opset=11, axis=3), x)
        check_node(node_model(op, [("x", x)], opset=11, axis=1), x)
    for size in (1, 3, 5):
        attrs = dict(size=size, alpha=0.3, beta=0.75, bias=2.0)
        check_node(node_model("LRN", [("x", x)], **attrs), x)
    check_node(node_model("Sum", [("a", x), ("b", x[0]), ("c", x[:, :1])]), x, x[0], x[:, :1])


def test_clip_before_opset_11_and_dropout_identity():
    x = f32(3, 5, scale=4)
    check_node(node_model("Clip", [("x", x)], opset=6, min=0.0, max=6.0), x)
    for op in ("Dropout", "Identity"):
        check_node(node_model(op, [("x", x)]), x)


def test_gemm_and_matmul():
    a = f32(3, 5)
    cases = [
        ([("b", f32(4, 5), "c"), ("c", f32(4), "c")], dict(transB=1)),
        ([("b", f32(5, 4), "c"), ("c", f32(1, 4), "c")], dict(alpha=0.5, beta=2.0)),
        ([("b", f32(5, 4), "c"), ("c", f32(1), "c")], {}),
        ([("b", f32(5, 4), "c")], {}),
    ]
    for inputs, attrs in cases:
        check_node(node_model("Gemm", [("a", a), *inputs], **attrs), a)
    batched = f32(2, 3, 5)
    check_node(node_model("MatMul", [("a", batched), ("b", f32(5, 4), "c")]), batched)
    check_node(node_model("MatMul", [("a", batched), ("b", f32(2, 5, 4))]), batched, f32(2, 5, 4))
    check_node(node_model("MatMul", [("a", f32(5)), ("b", f32(3, 5, 2))]), f32(5), f32(3, 5, 2))


BROADCASTS = [((2, 3, 4, 5), (3, 1, 1)), ((2, 3, 4, 5), (1, 3, 4, 1)), ((4, 5), (2, 3, 4, 5))]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary(op):
    for a_shape, b_shape in BROADCASTS:
        a, b = f32(*a_shape), 2 + R.random(b_shape, np.float32)
        check_node(node_model(op, [("a", a), ("b", b)]), a, b)
        check_node(node_model(op, [("a", a), ("b", b, "c")]), a)
        check_node(node_model(op, [("b", b, "c"), ("a", a)]), a)
    ints = i64([7, -7, 6, 9])
    check_node(node_model(op, [("a", ints), ("b", i64([2, 2, 4, -4]), "c")]), ints)


def test_shape_ops():
    x = f32(2, 3, 4, 5)
    check_node(node_model("Reshape", [("x", x), ("s", i64([0, -1, 5]), "c")]), x)
    check_node(node_model("Reshape", [("x", x), ("s", i64([6, 20]))]), x, i64([6, 20]))
    check_node(node_model("Transpose", [("x", x)], perm=[0, 2, 3, 1]), x)
    check_node(node_model("Transpose", [("x", x)]), x)
    for axis in (0, 1, 2, -1):
        check_node(node_model("Flatten", [("x", x)], axis=axis), x)
    y = f32(2, 1, 4, 1)
    check_node(node_model("Squeeze", [("x", y), ("a", i64([1, -1]), "c")]), y)
    check_node(node_model("Squeeze", [("x", y)], opset=11, axes=[1]), y)
    check_node(node_model("Squeeze", [("x", y)]), y)
    check_node(node_model("Unsqueeze", [("x", x), ("a", i64([0, -1]), "c")]), x)
    check_node(node_model("Unsqueeze", [("x", x)], opset=11, axes=[2]), x)
    check_node(node_model("Shape", [("x", x)]), x)
    check_node(node_model("Shape", [("x", x)], opset=15, start=1, end=-1), x)
    check_node(node_model("Cast", [("x", x)], to=7), x)
    check_node(node_model("Expand", [("x", f32(3, 1)), ("s", i64([2, 3, 4]), "c")]), f32(3, 1))


def test_concat_split_slice_gather():
    a, b = f32(2, 3, 4), f32(2, 5, 4)
    check_node(node_model("Concat", [("a", a), ("b", b)], axis=1), a, b)
    check_node(node_model("Concat", [("a", a), ("b", a, "c")], axis=-1), a)
    x = f32(2, 6, 5)
    check_node(node_model("Split", [("x", x), ("s", i64([1, 5]), "c")], 2, axis=1), x)
    check_node(node_model("Split", [("x", x)], 3, axis=1), x)
    check_node(node_model("Split", [("x", x)], 2, opset=11, axis=2, split=[2, 3]), x)
    check_node(node_model("Split", [("x", x)], 2, opset=18, axis=2, num_outputs=2), x)
    bounds = [("s", i64([1, -1]), "c"), ("e", i64([4, -100]), "c")]
    check_node(
        node_model("Slice", [("x", x), *bounds, ("a", i64([1, 2]), "c"), ("t", i64([2, -1]), "c")]),
        x,
    )
    check_node(
        node_model("Slice", [("x", x), ("s", i64([1])), ("e", i64([3]))]), x, i64([1]), i64([3])
    )
    check_node(node_model("Slice", [("x", x)], opset=9, starts=[1], ends=[9], axes=[1]), x)
    check_node(node_model("Gather", [("x", x), ("i", i64([[0, -1], [2, 2]]), "c")], axis=1), x)
    check_node(node_model("Gather", [("x", x), ("i", i64([1, 0]))], axis=0), x, i64([1, 0]))


def test_pads_reductions_constants():
    x = f32(2, 3, 4, 5)
    pads = i64([0, 0, 1, 2, 0, 0, 2, 1])
    for mode in ("constant", "reflect", "edge", "wrap"):
        check_node(node_model("Pad", [("x", x), ("p", pads, "c")], mode=mode), x)
    value = ("v", np.array(1.5, np.float32), "c")
    check_node(node_model("Pad", [("x", x), ("p", i64([0, 1, 0, -1, 1, 0, 0, 2]), "c"), value]), x)
    for op in ("ReduceMean", "ReduceSum", "ReduceMax"):
        check_node(node_model(op, [("x", x), ("a", i64([2, 3]), "c")], opset=18, keepdims=0), x)
        check_node(node_model(op, [("x", x)], opset=18), x)
    check_node(node_model("ReduceMean", [("x", x)], opset=13, axes=[-1], keepdims=1), x)
    shape = ("s", i64([2, 3]))
    check_node(node_model("ConstantOfShape", [shape]), i64([2, 3]))
    three = [(n, np.array(v, np.int64)) for n, v in (("a", 1), ("b", 9), ("c", 3))]
    check_node(node_model("Range", three), *[v for _, v in three])
    constant = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = node_model("Constant", [], value=onnx_tensor(constant))
    assert np.array_equal(ckonnx.load(model)(), constant)


def onnx_tensor(array):
    from onnx import numpy_helper

    return numpy_helper.from_array(array)


def test_backward_of_imported_nodes():
    """Numerical gradient checks (float64) of imported nodes, inputs and parameters."""
    x = X.astype(np.float64)
    cases = [
        node_model(
            "Conv", [("x", X), ("w", W, "c"), ("b", B, "c")], auto_pad="SAME_LOWER", strides=[2, 2]
        ),
        node_model("Conv", [("x", X), ("w", W, "c")], pads=[0, 1, 2, 1]),
        node_model("AveragePool", [("x", X)], kernel_shape=[3, 3], pads=[1, 0, 0, 1]),
        node_model("AveragePool", [("x", X)], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        node_model("MaxPool", [("x", X)], kernel_shape=[2, 2], dilations=[2, 1], ceil_mode=1),
        node_model("Mul", [("x", X), ("s", f32(4, 1, 1), "c")]),
        node_model("Div", [("s", f32(4, 1, 1), "c"), ("x", X)]),
        node_model("Transpose", [("x", X)], perm=[0, 2, 3, 1]),
        node_model(
            "Slice",
            [
                ("x", X),
                ("s", i64([1, -1]), "c"),
                ("e", i64([4, -6]), "c"),
                ("a", i64([1, 3]), "c"),
                ("t", i64([2, -1]), "c"),
            ],
        ),
        node_model("Gather", [("x", X), ("i", i64([[0, 3], [3, 1]]), "c")], axis=1),
        node_model("ReduceMax", [("x", X), ("a", i64([2, 3]), "c")], opset=18),
        node_model("ReduceMean", [("x", X), ("a", i64([1]), "c")], opset=18, keepdims=0),
        node_model("Pad", [("x", X), ("p", i64([0, 1, 0, -1, 1, 0, 0, 2]), "c")]),
        node_model("MatMul", [("x", X), ("w", f32(8, 3), "c")]),
        node_model("PRelu", [("x", X), ("s", f32(4, 1, 1), "c")]),
        node_model("HardSigmoid", [("x", X)]),
        node_model("LRN", [("x", X)], size=3, alpha=0.5, beta=0.75, bias=1.5),
        node_model("LogSoftmax", [("x", X)], opset=11, axis=1),
    ]
    for model in cases:
        assert_gradcheck(ckonnx.load(model, dtype=np.float64), x + 0.01)


def test_sample_norms_resize_depth_to_space():
    x = f32(2, 6, 4, 5)
    s, b = (("s", f32(6), "c"), ("b", f32(6), "c"))
    check_node(node_model("InstanceNormalization", [("x", x), s, b], epsilon=1e-3), x)
    x3 = f32(2, 6, 7)
    check_node(node_model("InstanceNormalization", [("x", x3), s, b]), x3)
    scale, bias = ("s", f32(4, 5), "c"), ("b", f32(4, 5), "c")
    check_node(node_model("LayerNormalization", [("x", x), scale, bias], axis=-2), x)
    check_node(node_model("LayerNormalization", [("x", x), ("s", f32(5), "c")], axis=3), x)
    check_node(node_model("GroupNormalization", [("x", x), s, b], opset=21, num_groups=3), x)
    per_group = [("s", f32(3), "c"), ("b", f32(3), "c")]
    check_node(node_model("GroupNormalization", [("x", x), *per_group], opset=18, num_groups=3), x)
    nearest = dict(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    scales = ("r", np.array([1, 1, 2, 1.5], np.float32), "c")
    check_node(node_model("Resize", [("x", x), "", scales], mode="nearest", **nearest), x)
    for coordinates in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        sizes = ("z", i64([2, 6, 7, 3]), "c")
        attrs = dict(mode="linear", coordinate_transformation_mode=coordinates)
        check_node(node_model("Resize", [("x", x), "", "", sizes], **attrs), x)
    attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    check_node(
        node_model(
            "Resize", [("x", x), "", ("r", np.array([1, 1, 0.5, 2], np.float32), "c")], **attrs
        ),
        x,
    )
    check_node(
        node_model("Resize", [("x", x), "", "", ("z", i64([2, 6, 8, 9]))], **attrs),
        x,
        i64([2, 6, 8, 9]),
    )
    check_node(
        node_model("Upsample", [("x", x), ("r", np.array([1, 1, 2, 3], np.float32), "c")], opset=9),
        x,
    )
    x8 = f32(2, 8, 3, 3)
    check_node(node_model("DepthToSpace", [("x", x8)], blocksize=2, mode="CRD"), x8)


@pytest.mark.parametrize(
    "op", ["Neg", "Abs", "Sqrt", "Exp", "Log", "Erf", "Reciprocal", "Floor", "Ceil"]
)
def test_unary(op):
    x = 0.1 + R.random((3, 4), np.float32) * 3
    check_node(node_model(op, [("x", x)]), x)


def test_pow():
    x = 0.1 + R.random((2, 3, 4), np.float32)
    for exponent in (np.float32(2), np.float32(0.5), np.array([1, 2, 3, 0.5], np.float32)):
        check_node(node_model("Pow", [("x", x), ("p", exponent, "c")]), x)


def test_backward_of_decomposed_and_resampling_nodes():
    x = 0.2 + R.random((2, 4, 5, 6))
    Y = x.astype(np.float32)
    cases = [
        node_model(op, [("x", Y)]) for op in ("Sqrt", "Exp", "Log", "Erf", "Reciprocal", "Abs")
    ] + [
        node_model("Pow", [("x", Y), ("p", np.array([1.5, 2, 3, 0.5, 1, 2], np.float32), "c")]),
        node_model("Resize", [("x", Y), "", "", ("z", i64([2, 4, 7, 4]), "c")], mode="linear"),
        node_model("InstanceNormalization", [("x", Y), ("s", f32(4), "c"), ("b", f32(4), "c")]),
        node_model("LayerNormalization", [("x", Y), ("s", f32(6), "c")]),
        node_model(
            "GroupNormalization",
            [("x", Y), ("s", f32(4), "c"), ("b", f32(4), "c")],
            opset=21,
            num_groups=2,
        ),
    ]
    for model in cases:
        assert_gradcheck(ckonnx.load(model, dtype=np.float64), x)


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 2]))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    auto_pad = draw(st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    dilation = st.integers(1, 1 if auto_pad.startswith("SAME") else 2)  # onnxruntime's limit
    attrs = {
        "strides": [draw(st.integers(1, 3)), draw(st.integers(1, 3))],
        "dilations": [draw(dilation), draw(dilation)],
        "group": groups,
    }
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, 2)) for _ in range(4)]
    else:
        attrs["auto_pad"] = auto_pad
    size = (draw(st.integers(8, 11)), draw(st.integers(8, 11)))
    return c_in, c_out, kernel, size, attrs


@settings(max_examples=25, deadline=None)
@given(conv_configs(), st.booleans())
def test_conv_configurations_by_hypothesis(config, with_bias):
    c_in, c_out, kernel, size, attrs = config
    rng = np.random.default_rng(len(str(config)))
    x = rng.standard_normal((2, c_in, *size)).astype(np.float32)
    w = rng.standard_normal((c_out, c_in // attrs["group"], *kernel)).astype(np.float32)
    bias = [("b", rng.standard_normal(c_out).astype(np.float32), "c")] if with_bias else []
    # Sums of up to 8 x 9 products of N(0, 1) values: float32 rounding in another order is
    # up to ~1e-5 absolute on outputs near zero (the bound is rtol 1e-4).
    model = node_model("Conv", [("x", x), ("w", w, "c"), *bias], **attrs)
    check_node(model, x, rtol=1e-4, atol=2e-5)


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(["MaxPool", "AveragePool"]),
    st.integers(1, 3),
    st.integers(1, 3),
    st.lists(st.integers(0, 1), min_size=4, max_size=4),
    st.booleans(),
    st.sampled_from(["NOTSET", "SAME_UPPER", "VALID"]),
    st.booleans(),
    st.integers(1, 2),
)
def test_pool_configurations_by_hypothesis(op, k, s, pads, include_pad, auto_pad, ceil, d):
    x = np.random.default_rng(k * 10 + s).standard_normal((2, 3, 7, 8)).astype(np.float32)
    attrs = {"kernel_shape": [k, k + 1], "strides": [s, s]}
    if auto_pad == "NOTSET":
        halves = (k // 2, (k + 1) // 2, k // 2, (k + 1) // 2)  # [top, left, bottom, right]
        attrs["pads"] = [min(p, half) for p, half in zip(pads, halves, strict=True)]
    else:
        attrs["auto_pad"] = auto_pad
    if op == "AveragePool":
        attrs["count_include_pad"] = int(include_pad)
    elif auto_pad != "SAME_UPPER":  # onnxruntime takes no dilations with auto_pad SAME
        attrs["dilations"] = [d, d]
    if auto_pad == "NOTSET":
        attrs["ceil_mode"] = int(ceil)
    check_node(node_model(op, [("x", x)], **attrs), x)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["Add", "Sub", "Mul", "Div"]), st.data())
def test_broadcasting_by_hypothesis(op, data):
    shape = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    other = [data.draw(st.sampled_from([1, n])) for n in shape]
    other = other[data.draw(st.integers(0, len(other))) :]
    rng = np.random.default_rng(len(shape))
    a = rng.standard_normal(shape).astype(np.float32)
    b = np.asarray(1.5 + rng.random(other), dtype=np.float32)
    graph = check_node(node_model(op, [("a", a), ("b", b)]), a, b)
    da, db = graph.backward(np.ones(np.broadcast_shapes(a.shape, b.shape), np.float32))
    assert da.shape == a.shape and db.shape == b.shape
