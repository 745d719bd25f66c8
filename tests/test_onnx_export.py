"""cnnkit models out: every zoo model exported by cnnkit.onnx.export passes onnx.checker with a
dynamic batch, onnxruntime on the file gives cnnkit's logits (batch 1 and 3, rtol 1e-4), and
loading the file back gives the same state_dict and outputs; so do the layers outside the zoo;
what cannot be exported is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_support import onnx, run_ort

import cnnkit as ck
import cnnkit.nn as nn
import cnnkit.onnx as ckonnx

SMALLER_INPUT = {"xception": (3, 71, 71)}
"""Xception is exported at 299 x 299 by default; the tests trace it at 71 x 71 (any size works:
its classifier follows a global pool), which keeps them fast."""


def assert_state_equal(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


def perturb_batch_norms_(model: nn.Module, rng) -> nn.Module:
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = module.num_features
            module.weight.data[...] = 1 + 0.2 * rng.standard_normal(c)
            module.bias.data[...] = 0.2 * rng.standard_normal(c)
            module.running_mean[...] = 0.2 * rng.standard_normal(c)
            module.running_var[...] = 0.5 + rng.random(c)
            module.num_batches_tracked[...] = 7
    return model


def check_round_trip(model, input_shape, rng, tmp_path, **options):
    """Export, check the file, compare onnxruntime and the re-imported model with ``model``."""
    path = tmp_path / "model.onnx"
    proto = ckonnx.export(model, path, input_shape, **options)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"
    imported = ckonnx.load(path)
    assert_state_equal(model, imported)
    model.eval()
    for n in (1, 3):
        x = rng.standard_normal((n, *input_shape)).astype(np.float32)
        expected = model(x)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(
            run_ort(path.read_bytes(), x)[0], expected, rtol=1e-4, atol=1e-5 * scale
        )
        # the import may pool with another float32 summation order (GlobalAveragePool as a
        # mean, AdaptiveAvgPool2d as a matrix product): a few float32 ulps of the logit scale
        np.testing.assert_allclose(imported(x), expected, rtol=1e-6, atol=1e-6 * scale)
    return imported


@pytest.mark.parametrize("name", ck.models.list_models())
def test_zoo_model_round_trip(name, rng, tmp_path):
    model = perturb_batch_norms_(ck.models.get(name), rng)
    shape = SMALLER_INPUT.get(name, model.default_input_shape)
    imported = check_round_trip(model, shape, rng, tmp_path)
    assert imported.metadata["producer"].startswith("cnnkit")


def test_option_a_resnet_and_float64(rng, tmp_path):
    """The zero-padded shortcut (Slice + Pad), and a float64 model (DOUBLE tensors)."""
    check_round_trip(ck.models.get("resnet20", shortcut="A"), (3, 16, 16), rng, tmp_path)
    model = ck.models.get("lenet5", dtype=np.float64)
    proto = ckonnx.export(model, tmp_path / "double.onnx")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    imported = ckonnx.load(tmp_path / "double.onnx", dtype=np.float64)
    x = rng.standard_normal((2, 1, 28, 28))
    np.testing.assert_allclose(imported(x), model(x), rtol=1e-12)


def layer_zoo(rng):
    """A network of the layers outside the zoo models, each once."""
    r = np.random.default_rng(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding="same", padding_mode="reflect", rng=r),
        nn.PReLU(8),
        nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, rng=r),
        nn.Hardswish(),
        nn.ZeroPad2d((1, 0, 2, 1)),
        nn.Conv2d(6, 6, 3, groups=3, dilation=2, rng=r),
        nn.ReLU6(),
        nn.ReplicationPad2d(1),
        nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
        nn.MaxPool2d(2, 1, dilation=2, ceil_mode=True),
        nn.AvgPool2d(2, 2, ceil_mode=True),
        nn.SiLU(),
        nn.Mish(),
        nn.ELU(0.5),
        nn.Hardtanh(-0.5, 0.5),
        nn.Residual(nn.Sequential(nn.Conv2d(6, 6, 1, rng=r), nn.Hardsigmoid())),
        nn.Softplus(),
        nn.LeakyReLU(0.1),
        nn.AdaptiveAvgPool2d((2, 3)),
        nn.Tanh(),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(36, 5, rng=r),
        nn.Sigmoid(),
        nn.Identity(),
        nn.LogSoftmax(dim=1),
    )


def test_layers_outside_the_zoo(rng, tmp_path):
    imported = check_round_trip(layer_zoo(rng), (3, 9, 8), rng, tmp_path)
    layers = {name: type(layer).__name__ for name, layer in imported.layers()}
    assert layers["0_Pad"] == "ReflectionPad2d" and layers["15.Add"] == "Add"
    assert [layers[str(i)] for i in (1, 2, 3, 6, 9, 13, 14, 17)] == [
        "PReLU",
        "ConvTranspose2d",
        "Hardswish",
        "ReLU6",
        "MaxPool2d",
        "ELU",
        "Hardtanh",
        "LeakyReLU",
    ]
    gelu = nn.Sequential(nn.Conv2d(2, 3, 3, rng=np.random.default_rng(0)), nn.GELU("tanh"))
    check_round_trip(gelu, (2, 6, 6), rng, tmp_path, opset=20)


def graph_zoo():
    """A Graph of the joins, resampling layers and sample normalisations."""
    r = np.random.default_rng(0)
    g = nn.Graph(inputs=["x"])
    g.add("stem", nn.Conv2d(3, 8, 3, padding=1, rng=r), "x")
    g.add("halves", nn.Split(4, dim=1), "stem")
    g.add("left", nn.Conv2d(4, 4, 3, padding=1, rng=r), "halves:0")
    g.add("norm", nn.InstanceNorm2d(4, affine=True), "halves:1")
    g.add("cat", nn.Concat(dim=1), "left", "norm")
    g.add("shuffle", nn.ChannelShuffle(2), "cat")
    g.add("sum", nn.Add(), "shuffle", "stem", "cat")
    g.add("down", nn.PixelUnshuffle(2), "sum")
    g.add("up", nn.PixelShuffle(2), "down")
    g.add("big", nn.Upsample(scale_factor=2, mode="bilinear"), "up")
    g.add("near", nn.Upsample(size=(5, 7)), "big")
    g.add("ln", nn.LayerNorm((5, 7)), "near")
    g.add("corners", nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True), "ln")
    g.add("gn", nn.GroupNorm(4, 8), "corners")
    g.outputs("gn")
    return g


def test_graph_of_joins_resampling_and_norms(rng, tmp_path):
    model = graph_zoo()
    for module in model.modules():
        for p in module.parameters():
            p.data[...] = rng.standard_normal(p.shape)
    imported = check_round_trip(model, (3, 6, 8), rng, tmp_path, opset=21)
    kinds = {type(layer).__name__ for _, layer in imported.layers()}
    assert {"Split", "Concat", "InstanceNorm2d", "PixelShuffle", "Upsample"} <= kinds
    assert {"LayerNorm", "GroupNorm"} <= kinds


def test_export_leaves_the_model_as_it_was(rng, tmp_path):
    model = ck.models.get("small_cnn")
    before = model.state_dict()
    model.train()
    ckonnx.export(model, tmp_path / "m.onnx", dynamic_batch=False)
    assert model.training and all(m.training for m in model.modules())
    assert_state_equal(model, ckonnx.load(tmp_path / "m.onnx"))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    dims = onnx.load(tmp_path / "m.onnx").graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1


class Exp(nn.Module):
    def forward(self, x):
        return np.exp(x)


class Doubler(nn.Module):
    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(np.exp(x))


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(x)
        y += 1
        return y


class FromNowhere(nn.Module):
    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x):
        return x + self.relu(np.ones(x.shape[1:], dtype=x.dtype))


def test_export_errors(tmp_path):
    path = tmp_path / "never.onnx"
    with pytest.raises(ckonnx.ExportError, match=r"no ONNX form for layer '1' \(Exp\)"):
        ckonnx.export(nn.Sequential(nn.ReLU(), Exp()), path, (1, 4, 4))
    with pytest.raises(ckonnx.ExportError, match=r"layer 'relu' received a value computed by a"):
        ckonnx.export(Doubler(), path, (1, 4, 4))
    with pytest.raises(ckonnx.ExportError, match="layer 'relu' received an array that does not"):
        ckonnx.export(FromNowhere(), path, (1, 4, 4))
    with pytest.raises(ckonnx.ExportError, match="in-place numpy operation add"):
        ckonnx.export(InPlace(), path, (1, 4, 4))
    with pytest.raises(ckonnx.ExportError, match="GELU needs opset 20 or later, got 17"):
        ckonnx.export(nn.Sequential(nn.GELU()), path, (1, 4, 4))
    with pytest.raises(ckonnx.ExportError, match="'0': GroupNorm needs opset 21 or later, got 17"):
        ckonnx.export(nn.Sequential(nn.GroupNorm(1, 1)), path, (1, 4, 4))
    with pytest.raises(ckonnx.ExportError, match="Softplus with beta 2.0"):
        ckonnx.export(nn.Sequential(nn.Softplus(beta=2.0)), path, (1, 4, 4))
    with pytest.raises(TypeError, match="export expected a cnnkit Module, got str"):
        ckonnx.export("lenet5", path, (1, 4, 4))
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\) or \(N, C, H, W\)"):
        ckonnx.export(nn.Sequential(nn.ReLU()), path, (4, 4))
    with pytest.raises(ValueError, match="export needs input_shape"):
        ckonnx.export(nn.Sequential(nn.ReLU()), path)
    assert not path.exists()
