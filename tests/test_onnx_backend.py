"""The node tests that ship inside the onnx package (onnx.backend.test.case.node), for every
operator cnnkit.onnx supports: each case gives the reference outputs, or is refused in one line
(UnsupportedOperatorError, or TypeError for an element type cnnkit does not compute in) for one
of the documented reasons in REFUSED (docs/onnx.md lists them). Cases are built from the
package's own generators (no files, no network); weights that a case feeds as graph inputs are
made initializers when the importer asks for constants, as a model file stores them.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import warnings

import numpy as np
import pytest
from onnx_support import onnx, run_ort

import cnnkit.onnx as ckonnx

CASE_MODULES = (
    "abs add averagepool batch_normalization cast ceil clip concat constant constantofshape conv "
    "convtranspose depthtospace div dropout elu erf exp expand flatten floor gather gelu gemm "
    "globalaveragepool globalmaxpool groupnormalization hardsigmoid hardswish identity "
    "instance_normalization layernormalization leakyrelu log logsoftmax lrn matmul maxpool mish "
    "mul neg pad pow prelu rangeop reciprocal reducemax reducemean reducesum relu reshape resize "
    "shape sigmoid slice softmax softplus split sqrt squeeze sub sum tanh transpose unsqueeze "
    "upsample"
).split()

REFUSED = {
    r"_expanded": "a function body made of operators outside the supported list (Exp, CastLike)",
    r"^test_cast_|float16|bfloat16": "float16, bfloat16, 8/4/2-bit types: cnnkit computes in "
    "float32 or float64",
    r"training|_mask": "training-mode Dropout and BatchNormalization, Dropout's mask output",
    r"_1d|_3d": "1-D and 3-D pooling, 1-D and 3-D transposed convolution",
    r"averagepool_2d_dilations": "AveragePool with dilations (AvgPool2d has none)",
    r"argmax": "MaxPool's Indices output",
    r"sequence|_opt$": "sequence and optional inputs",
    r"uint8|int8|_pad$": "integer data through layers that compute in floats (MaxPool, Pad "
    "reflect/edge/wrap, ReLU)",
    r"same_lower|averagepool_2d_pads$": "AveragePool without counting pads where the padding "
    "needs a separate layer (SAME_LOWER, pads beyond half the kernel)",
    r"convtranspose_(output_shape|kernel_shape|autopad)": "ConvTranspose with output_shape or "
    "auto_pad SAME (asymmetric padding)",
    r"matrix_bias": "Gemm with a per-row bias matrix C",
    r"prelu_(example|broadcast)": "PRelu slopes other than one value or one per channel",
    r"resize_.*(cubic|antialias|tf_crop|axes|symmetric|not_larger|not_smaller)": "Resize modes "
    "and options torch's interpolation does not have (cubic, antialias, tf_crop_and_resize, "
    "axes, keep_aspect_ratio_policy, half_pixel_symmetric)",
    r"resize_.*nearest": "nearest Resize with ONNX's default rounding (half_pixel, "
    "round_prefer_floor), which is not torch's nearest (asymmetric, floor)",
    r"pytorch_half_pixel": "pytorch_half_pixel to an output of length 1",
    r"depthtospace_example": "DepthToSpace in DCR mode",
    r"layer_normalization": "LayerNormalization's optional Mean and InvStdDev outputs",
}

FOLLOWS_ONNXRUNTIME = {
    "test_resize_downsample_scales_linear_align_corners": "with scales and align_corners the "
    "reference divides by the unfloored output length; onnxruntime and torch by the floored one",
}
"""Cases whose reference outputs onnxruntime does not give either: checked against it."""


def _collect():
    import onnx.backend.test.case.node as cases

    cases._TargetOpType = None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for name in CASE_MODULES:
            importlib.import_module(f"onnx.backend.test.case.node.{name}")
    return list(cases._NodeTestCases)


CASES = _collect()


def _baked(model, inputs):
    """The model with its inputs after the first made initializers holding ``inputs``' values."""
    model = copy.deepcopy(model)
    rest = list(model.graph.input[1:])
    del model.graph.input[1:]
    for info, value in zip(rest, inputs[1:], strict=False):
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), info.name))
    return model, inputs[:1]


def _check(model, inputs, outputs, case) -> None:
    floats = [x for x in inputs if isinstance(x, np.ndarray) and x.dtype.kind == "f"]
    dtype = np.float64 if floats and floats[0].dtype == np.float64 else np.float32
    got = ckonnx.load(model, dtype=dtype)(*inputs)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(outputs)
    for ours, expected in zip(got, outputs, strict=True):
        assert ours.dtype == expected.dtype, (ours.dtype, expected.dtype)
        np.testing.assert_allclose(ours, expected, rtol=case.rtol, atol=case.atol)


def _run(case) -> None:
    for inputs, outputs in case.data_sets:
        if case.name in FOLLOWS_ONNXRUNTIME:
            outputs = run_ort(case.model, *inputs)
        if not all(isinstance(x, (np.ndarray, np.generic)) for x in inputs):
            raise TypeError(f"{case.name} feeds inputs that are not arrays (TensorProto)")
        try:
            _check(case.model, inputs, outputs, case)
        except ckonnx.UnsupportedOperatorError as error:
            if "must be a constant" not in str(error):
                raise
            _check(*_baked(case.model, inputs), outputs, case)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node(case):
    """A case outside REFUSED's patterns must give the reference outputs; one inside them may
    also be refused, in one line."""
    reasons = [reason for pattern, reason in REFUSED.items() if re.search(pattern, case.name)]
    try:
        _run(case)
    except (ckonnx.UnsupportedOperatorError, TypeError) as error:
        assert "\n" not in str(error)
        assert reasons, f"{case.name} refused for an undocumented reason: {error}"


LIGHT_MODELS = [
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
]
"""onnx/backend/test/data/light: ONNX model zoo architectures at opset 9 (Caffe2 exports: LRN,
Sum, Dropout with its mask, Softmax on flattened axes), their weights ConstantOfShape fills.
(bvlc_alexnet, vgg19 and zfnet512 import too, and are left out for time.)"""


def _random_weights(model, rng):
    """The model with every ConstantOfShape fill made a random initializer of its shape: He
    normal for kernels and matrices, the fill value with noise for vectors (positive fills,
    the batch-norm variances, stay positive)."""
    model = copy.deepcopy(model)
    shapes = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape":
            kept.append(node)
            continue
        shape = tuple(int(s) for s in shapes[node.input[0]])
        fill = onnx.numpy_helper.to_array(node.attribute[0].t).reshape(-1)[0]
        if len(shape) >= 2:
            value = rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[1:]))
        else:
            value = fill * (1 + 0.2 * rng.standard_normal(shape)) + 0.1 * rng.standard_normal(shape)
            value = np.abs(value) if fill > 0 else value
        model.graph.initializer.append(
            onnx.numpy_helper.from_array(value.astype(np.float32), node.output[0])
        )
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_onnx_model_zoo_architecture(name):
    path = os.path.join(
        os.path.dirname(onnx.__file__), "backend/test/data/light", f"light_{name}.onnx"
    )
    model = _random_weights(onnx.load(path), np.random.default_rng(0))
    initializers = {t.name for t in model.graph.initializer}
    (data,) = [i for i in model.graph.input if i.name not in initializers]
    shape = [d.dim_value for d in data.type.tensor_type.shape.dim]
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    expected = run_ort(model, x)[0]
    got = ckonnx.load(model)(x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
