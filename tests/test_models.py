"""Model zoo tests: registry, summaries, shapes, parameter counts, gradients, PyTorch parity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import cnnkit.models as zoo
from cnnkit.gradcheck import gradcheck
from cnnkit.models.summary import non_trainable_count, trace, trainable_count
from cnnkit.nn import BatchNorm2d

torch.set_num_threads(1)

# ----------------------------------------------------------------------------- helpers


def conv_params(cin, cout, k, bias=False):
    """A k x k convolution: cin * cout * k^2 weights (+ cout biases)."""
    return cin * cout * k * k + (cout if bias else 0)


def sep_params(cin, cout):
    """Depthwise 3x3 (cin * 9) + pointwise 1x1 (cin * cout), no biases (Xception)."""
    return cin * 9 + cin * cout


def bn_params(c):
    """Trainable batch-norm parameters: gamma and beta."""
    return 2 * c


def linear_params(fin, fout):
    return fin * fout + fout


def prefix_count(model, prefixes):
    """Trainable scalars whose dotted name starts with one of ``prefixes`` (as a full component)."""
    return sum(
        p.size
        for name, p in model.named_parameters()
        if any(name == pre or name.startswith(pre + ".") for pre in prefixes)
    )


def set_batchnorm_state(model, rng):
    """Give every BatchNorm2d a non-trivial gamma, beta, running mean and running variance."""
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            c = module.num_features
            module.weight.data[...] = rng.uniform(0.5, 1.5, c)
            module.bias.data[...] = rng.uniform(-0.3, 0.3, c)
            module.running_mean[...] = rng.uniform(-0.2, 0.2, c)
            module.running_var[...] = rng.uniform(0.5, 2.0, c)


def calibrate_batchnorm(model, x):
    """Set running statistics to the statistics of batch ``x`` (momentum 1), then eval mode.

    Eval-mode activations then keep a unit scale through the whole depth, so no gradient is
    vanishingly small compared with the gradient check's round-off.
    """
    norms = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    model.train()
    model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def spatial_chain(rows, start):
    """The distinct spatial sizes that 4-D layer outputs go through, in call order."""
    chain = [start]
    for row in rows:
        if len(row.output_shape) == 4 and row.output_shape[2] != chain[-1]:
            chain.append(row.output_shape[2])
    return chain


@pytest.fixture(scope="module")
def xception1000():
    """The full Xception with 1000 classes (built once: 23M parameters take a second)."""
    return zoo.xception(num_classes=1000, in_channels=3)


# ----------------------------------------------------------------------------- registry

EXPECTED_MODELS = [
    "lenet5",
    "mini_xception",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "small_cnn",
    "vgg_small",
    "xception",
]


def test_list_is_sorted_and_complete():
    assert zoo.list() == EXPECTED_MODELS
    assert zoo.list() == sorted(zoo.list())


def test_get_unknown_name_lists_known_models():
    with pytest.raises(ValueError) as error:
        zoo.get("resnet21")
    message = str(error.value)
    assert "'resnet21'" in message
    for name in EXPECTED_MODELS:
        assert name in message


def test_get_rejects_unknown_option_naming_the_model():
    with pytest.raises(TypeError, match="'lenet5'"):
        zoo.get("lenet5", depth=3)


def test_takes_option():
    assert zoo.takes_option("lenet5", "input_size")
    assert zoo.takes_option("xception", "flavor")
    assert not zoo.takes_option("resnet20", "flavor")
    with pytest.raises(ValueError, match="known models"):
        zoo.takes_option("nope", "input_size")


def test_register_rejects_duplicates_and_builders_without_the_common_arguments():
    with pytest.raises(ValueError, match="already registered"):
        zoo.register("lenet5")(lambda num_classes=10, in_channels=1: None)
    with pytest.raises(TypeError, match="in_channels"):
        zoo.register("no_channels")(lambda num_classes=10: None)
    assert "no_channels" not in zoo.list()


def test_config_rebuilds_the_same_model_through_json():
    model = zoo.get(
        "xception",
        num_classes=4,
        in_channels=2,
        width=1 / 16,
        middle_blocks=1,
        input_size=40,
        dtype=np.float64,
        seed=5,
    )
    assert model.config == {
        "name": "xception",
        "num_classes": 4,
        "in_channels": 2,
        "width": 1 / 16,
        "middle_blocks": 1,
        "input_size": 40,
        "dtype": "float64",
        "seed": 5,
    }
    config = json.loads(json.dumps(model.config))
    rebuilt = zoo.get(**config)
    assert rebuilt.config == model.config
    for (key, a), (key2, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert key == key2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_direct_builder_call_records_config_with_its_own_defaults():
    model = zoo.resnet20(shortcut="A", rng=np.random.default_rng(1))
    assert model.config == {
        "name": "resnet20",
        "num_classes": 10,
        "in_channels": 3,
        "shortcut": "A",
    }


def test_seed_makes_builds_reproducible_and_rng_overrides_it():
    a, b = zoo.get("vgg_small", seed=3), zoo.get("vgg_small", seed=3)
    c = zoo.get("vgg_small", seed=4)
    d = zoo.get("vgg_small", rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.features[0].weight.data, b.features[0].weight.data)
    np.testing.assert_array_equal(a.features[0].weight.data, d.features[0].weight.data)
    assert not np.array_equal(a.features[0].weight.data, c.features[0].weight.data)
    with pytest.raises(TypeError, match="rng"):
        zoo.get("vgg_small", rng=3)


# ----------------------------------------------------------------------------- every model


@pytest.mark.parametrize("name", EXPECTED_MODELS)
def test_every_model_runs_forward_and_backward_on_28px(name):
    model = zoo.get(name, num_classes=10, in_channels=1)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    model.train()
    y = model(x)
    assert y.shape == (2, 10) and y.dtype == np.float32
    assert model.compute_output_shape((2, 1, 28, 28)) == (2, 10)
    model.zero_grad()
    dx = model.backward(np.ones_like(y) / y.size)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert np.all(np.isfinite(dx)) and np.any(dx != 0)
    for pname, p in model.named_parameters():
        assert p.grad.dtype == np.float32, pname
        assert np.all(np.isfinite(p.grad)) and np.any(p.grad != 0), pname


@pytest.mark.parametrize(
    "name, options",
    [
        ("lenet5", {"input_size": 32}),
        ("small_cnn", {"input_size": 32}),
        ("vgg_small", {}),
        ("resnet20", {}),
        ("resnet20", {"shortcut": "A"}),
        ("mini_xception", {"input_size": 32}),
        ("xception", {"width": 0.125, "middle_blocks": 2}),
    ],
)
def test_models_take_3x32x32(name, options):
    model = zoo.get(name, num_classes=7, in_channels=3, **options)
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 7)
    assert model.backward(np.ones_like(y)).shape == x.shape


@pytest.mark.parametrize("name", ["lenet5", "small_cnn"])
def test_8x8_digits_models(name):
    model = zoo.get(name, num_classes=10, in_channels=1, input_size=8)
    x = np.random.default_rng(2).standard_normal((3, 1, 8, 8)).astype(np.float32)
    y = model(x)
    assert y.shape == (3, 10)
    assert model.backward(np.ones_like(y)).shape == x.shape


def test_lenet5_sizes_follow_the_paper():
    # 28 px: padded first conv, 16 x 5 x 5 before the classifier, 61,706 parameters.
    model = zoo.lenet5()
    rows = trace(model, (1, 28, 28)).rows
    assert [r.output_shape for r in rows if r.type == "Flatten"] == [(1, 400)]
    assert (
        model.num_parameters()
        == (
            conv_params(1, 6, 5, bias=True)
            + conv_params(6, 16, 5, bias=True)
            + linear_params(400, 120)
            + linear_params(120, 84)
            + linear_params(84, 10)
        )
        == 61_706
    )
    # 32 px: the paper's valid convolutions give the same 5 x 5 maps.
    assert zoo.lenet5(input_size=32).features[0].padding == (0, 0)
    classic = zoo.lenet5(activation="tanh", pooling="avg")
    assert [type(m).__name__ for m in classic.features] == [
        "Conv2d",
        "Tanh",
        "AvgPool2d",
        "Conv2d",
        "Tanh",
        "AvgPool2d",
    ]


def test_float64_builds_hold_float64_everything():
    model = zoo.get("mini_xception", dtype=np.float64)
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float64)}
    x = np.zeros((1, 1, 28, 28))
    assert model(x).dtype == np.float64


@pytest.mark.parametrize(
    "builder, kwargs, match",
    [
        (zoo.xception, {"flavor": "pytorch"}, "flavor"),
        (zoo.xception, {"include_top": True, "pooling": None}, "pooling"),
        (zoo.xception, {"pooling": "sum"}, "pooling"),
        (zoo.xception, {"input_size": 5}, "input_size"),
        (zoo.xception, {"width": 0}, "width"),
        (zoo.xception, {"dropout": 1.0}, "dropout"),
        (zoo.xception, {"pool_padding": 2}, "pool_padding"),
        (zoo.xception, {"bn_eps": 0}, "bn_eps"),
        (zoo.resnet20, {"shortcut": "C"}, "shortcut"),
        (zoo.lenet5, {"activation": "gelu"}, "activation"),
        (zoo.lenet5, {"num_classes": 0}, "num_classes"),
        (zoo.vgg_small, {"input_size": 4}, "input_size"),
    ],
)
def test_bad_arguments_are_named(builder, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        builder(**kwargs)


def test_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n"):
        zoo.CifarResNet(depth=21)


def test_wrong_input_channels_is_reported():
    model = zoo.get("resnet20", in_channels=3)
    with pytest.raises(ValueError, match="3 channels, got 1"):
        model.summary((1, 32, 32))
    with pytest.raises(ValueError, match="3 channels, got 1"):
        model(np.zeros((1, 1, 32, 32), dtype=np.float32))


# ----------------------------------------------------------------------------- parameter counts


def resnet_cifar_count(in_channels, n, num_classes=10, projection=True):
    """ResNet-(6n+2) parameters from the layer shapes (He et al. 2016, section 4.2)."""

    def basic(cin, cout, changes):
        count = conv_params(cin, cout, 3) + bn_params(cout) + conv_params(cout, cout, 3)
        count += bn_params(cout)
        if changes and projection:
            count += conv_params(cin, cout, 1) + bn_params(cout)
        return count

    total = conv_params(in_channels, 16, 3) + bn_params(16)
    for cin, cout in ((16, 16), (16, 32), (32, 64)):
        total += basic(cin, cout, cin != cout) + (n - 1) * basic(cout, cout, False)
    return total + linear_params(64, num_classes)


def test_resnet20_parameter_count():
    expected_b = resnet_cifar_count(3, 3)
    assert expected_b == 272_474  # the paper's "0.27M"
    assert zoo.resnet20(in_channels=3).num_parameters() == expected_b
    assert zoo.resnet20(in_channels=1).num_parameters() == resnet_cifar_count(1, 3) == 272_186
    expected_a = resnet_cifar_count(3, 3, projection=False)
    assert expected_a == 269_722  # option A, the paper's CIFAR shortcut, has no parameters
    assert zoo.resnet20(in_channels=3, shortcut="A").num_parameters() == expected_a
    assert zoo.resnet56(in_channels=3).num_parameters() == resnet_cifar_count(3, 9)


def xception_flow_counts(in_channels=3, num_classes=1000):
    """Trainable parameters of each flow of Figure 5, from the layer shapes."""

    def entry_block(cin, cout):  # SepConv cin->cout, BN, SepConv cout->cout, BN, 1x1/2 conv + BN
        return (
            sep_params(cin, cout)
            + bn_params(cout)
            + sep_params(cout, cout)
            + bn_params(cout)
            + conv_params(cin, cout, 1)
            + bn_params(cout)
        )

    entry = conv_params(in_channels, 32, 3) + bn_params(32) + conv_params(32, 64, 3)
    entry += bn_params(64) + entry_block(64, 128) + entry_block(128, 256) + entry_block(256, 728)
    middle = 8 * 3 * (sep_params(728, 728) + bn_params(728))
    exit_ = (
        sep_params(728, 728)
        + bn_params(728)
        + sep_params(728, 1024)
        + bn_params(1024)
        + conv_params(728, 1024, 1)
        + bn_params(1024)
    )
    exit_ += sep_params(1024, 1536) + bn_params(1536) + sep_params(1536, 2048) + bn_params(2048)
    return {
        "entry": entry,
        "middle": middle,
        "exit": exit_,
        "top": linear_params(2048, num_classes),
    }


def test_xception_parameter_count_matches_the_paper(xception1000):
    flows = xception_flow_counts()
    assert sum(flows.values()) == 22_855_952  # Chollet (2017), Table 3
    model = xception1000
    assert trainable_count(model) == model.num_parameters() == 22_855_952
    entry = ["conv1", "bn1", "conv2", "bn2", "block1", "block2", "block3"]
    middle = [f"block{i}" for i in range(4, 12)]
    exit_ = ["block12", "conv3", "bn3", "conv4", "bn4"]
    assert prefix_count(model, entry) == flows["entry"]
    assert prefix_count(model, middle) == flows["middle"]
    assert prefix_count(model, exit_) == flows["exit"]
    assert prefix_count(model, ["fc"]) == flows["top"]
    # Running mean and variance: 54,528 non-trainable scalars, as Keras reports.
    assert non_trainable_count(model) == 54_528


def test_xception_convolutions_have_no_bias(xception1000):
    from cnnkit.nn import Conv2d

    convs = [m for m in xception1000.modules() if isinstance(m, Conv2d)]
    separables = 2 * 3 + 3 * 8 + 2 + 2  # entry blocks, middle blocks, exit block, conv3/conv4
    assert len(convs) == 2 + 4 + 2 * separables  # stem, shortcuts, depthwise + pointwise
    assert all(m.bias is None for m in convs)


def test_xception_without_top():
    kwargs = {"width": 0.125, "middle_blocks": 1, "include_top": False}
    assert zoo.xception(pooling="avg", **kwargs).compute_output_shape((2, 3, 299, 299)) == (2, 256)
    model = zoo.xception(pooling="max", **kwargs)
    assert model.compute_output_shape((2, 3, 299, 299)) == (2, 256)
    assert type(model.global_pool).__name__ == "GlobalMaxPool2d"
    model = zoo.xception(pooling=None, **kwargs)
    assert model.compute_output_shape((2, 3, 299, 299)) == (2, 256, 10, 10)
    assert "fc" not in dict(model.named_modules())


# ----------------------------------------------------------------------------- summaries


def test_xception_summary_sizes_and_totals(xception1000):
    result = trace(xception1000, (3, 299, 299))
    assert spatial_chain(result.rows, 299) == [299, 149, 147, 74, 37, 19, 10]
    assert result.output_shape == (1, 1000)
    text = xception1000.summary()
    assert "Total params: 22,910,480" in text
    assert "Trainable params: 22,855,952" in text
    assert "Non-trainable params: 54,528" in text
    assert "(None, 2048, 10, 10)" in text and "(None, 1000)" in text
    assert "block12.rep.0" in text
    # Row parameter counts add up to the total (a row counts a BN's running statistics too).
    assert sum(row.params for row in result.rows) == 22_910_480


@pytest.mark.parametrize("flavor", ["keras", "timm"])
def test_shape_inference_matches_a_real_forward_pass(flavor):
    model = zoo.xception(num_classes=5, width=0.0625, middle_blocks=1, flavor=flavor)
    inferred = trace(model, (3, 299, 299), infer=True)
    computed = trace(model, (3, 299, 299), infer=False)
    assert [(r.name, r.output_shape) for r in inferred.rows] == [
        (r.name, r.output_shape) for r in computed.rows
    ]
    assert inferred.output_shape == computed.output_shape == (1, 5)


@pytest.mark.parametrize("name", [n for n in EXPECTED_MODELS if n != "xception"])
def test_summary_of_every_model(name):
    model = zoo.get(name)
    text = model.summary()
    assert f"Total params: {trainable_count(model) + non_trainable_count(model):,}" in text
    assert f"Trainable params: {model.num_parameters():,}" in text
    inferred = trace(model, model.default_input_shape)
    computed = trace(model, model.default_input_shape, infer=False)
    assert [r.output_shape for r in inferred.rows] == [r.output_shape for r in computed.rows]


def test_summary_leaves_the_model_untouched():
    model = zoo.get("mini_xception")
    model.train()
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    y = model(x)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    zoo.summary(model, (1, 28, 28), infer=False)
    model.summary((4, 1, 28, 28))
    assert all(m.training for m in model.modules())
    assert not any("forward" in m.__dict__ for m in model.modules())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    # The caches of the last training forward pass survive, so backward still works.
    assert model.backward(np.ones_like(y)).shape == x.shape


def test_summary_table_layout():
    text = zoo.summary(zoo.lenet5(), (1, 28, 28))
    lines = text.splitlines()
    assert lines[0] == 'Model: "LeNet5" (lenet5)'
    assert "Layer (name)" in lines[3] and "Output Shape" in lines[3] and "Param #" in lines[3]
    assert any(line.split()[:4] == ["features.0", "Conv2d", "(None,", "6,"] for line in lines)
    assert any(line.split()[-1] == "48,120" for line in lines)  # classifier.0: 400*120 + 120
    assert "Total params: 61,706" in text and "Non-trainable params: 0" in text
    batch = zoo.summary(zoo.lenet5(), (8, 1, 28, 28))
    assert "(8, 10)" in batch and "None" not in batch
    with pytest.raises(ValueError, match="input_shape"):
        zoo.summary(zoo.lenet5(), (28, 28))


# ----------------------------------------------------------------------------- gradients


def test_gradcheck_tiny_xception():
    model = zoo.xception(
        num_classes=5, in_channels=3, width=1 / 16, middle_blocks=1, dtype=np.float64, seed=0
    )
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16))
    calibrate_batchnorm(model, x)
    # eps 1e-5: at 1e-6 the round-off of the deep float64 forward pass (amplified by batch norms
    # calibrated on 2 x 1 x 1 maps in the exit flow) reaches half the tolerance.
    report = gradcheck(model, x, max_per_array=2, eps=1e-5)
    assert report.passed, str(report)
    assert report.checked > 100


def test_gradcheck_resnet20_training_mode():
    model = zoo.resnet20(num_classes=5, in_channels=3, dtype=np.float64, seed=0)
    model.train()  # batch statistics: the batch-norm backward pass couples the whole batch
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12))
    report = gradcheck(model, x, max_per_array=1)
    assert report.passed, str(report)


@pytest.mark.parametrize("start_with_relu, grow_first", [(False, True), (True, False)])
def test_gradcheck_xception_block_training_mode(start_with_relu, grow_first):
    block = zoo.XceptionBlock(
        3,
        5,
        reps=2,
        stride=2,
        start_with_relu=start_with_relu,
        grow_first=grow_first,
        layers=zoo.LayerFactory(dtype=np.float64),
    )
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 7))
    assert gradcheck(block, x, max_per_array=20).passed


def test_gradcheck_parameter_free_layers():
    x = np.random.default_rng(2).standard_normal((2, 4, 5, 5))
    assert gradcheck(zoo.ZeroPadShortcut(4, 8, stride=2), x, max_per_array=None).passed
    assert gradcheck(zoo.GlobalMaxPool2d(), x, max_per_array=None).passed


def test_option_a_shortcut_pads_channels_evenly():
    x = np.arange(2 * 2 * 4 * 4, dtype=np.float32).reshape(2, 2, 4, 4)
    y = zoo.ZeroPadShortcut(2, 6, stride=2)(x)
    assert y.shape == (2, 6, 2, 2)
    np.testing.assert_array_equal(y[:, 2:4], x[:, :, ::2, ::2])
    assert not y[:, :2].any() and not y[:, 4:].any()


# ----------------------------------------------------------------------------- PyTorch parity


class TorchSeparable(torch.nn.Module):
    """timm legacy_xception's SeparableConv2d: depthwise ``conv1`` then ``pointwise``."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pointwise = torch.nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.conv1(x))


class TorchSamePool(torch.nn.Module):
    """3x3/2 max-pool with TensorFlow's 'same' padding (extra row/column at the bottom/right)."""

    def forward(self, x):
        pads = []
        for size in (x.shape[3], x.shape[2]):  # F.pad lists the last axis first
            total = max((math.ceil(size / 2) - 1) * 2 + 3 - size, 0)
            pads += [total // 2, total - total // 2]
        return TF.max_pool2d(TF.pad(x, pads, value=-math.inf), 3, 2)


class TorchBlock(torch.nn.Module):
    """timm legacy_xception's Block, written out again for the parity test."""

    def __init__(
        self, cin, cout, reps, stride, start_with_relu=True, grow_first=True, eps=1e-5, pool=None
    ):
        super().__init__()
        if cout != cin or stride != 1:
            self.skip = torch.nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.skipbn = torch.nn.BatchNorm2d(cout, eps=eps)
        else:
            self.skip = None
        rep = []
        for i in range(reps):
            if grow_first:
                a, b = (cin if i == 0 else cout), cout
            else:
                a, b = cin, (cin if i < reps - 1 else cout)
            rep += [torch.nn.ReLU(), TorchSeparable(a, b), torch.nn.BatchNorm2d(b, eps=eps)]
        if not start_with_relu:
            rep = rep[1:]
        if stride != 1:
            rep.append(pool())
        self.rep = torch.nn.Sequential(*rep)

    def forward(self, x):
        skip = x if self.skip is None else self.skipbn(self.skip(x))
        return self.rep(x) + skip


class TorchXception(torch.nn.Module):
    """Xception in PyTorch with timm legacy_xception's attribute names."""

    def __init__(self, width, middle, num_classes, in_channels, eps, pool):
        super().__init__()

        def w(c):
            return max(1, round(c * width))

        def bn(c):
            return torch.nn.BatchNorm2d(c, eps=eps)

        self.conv1 = torch.nn.Conv2d(in_channels, w(32), 3, 2, 0, bias=False)
        self.bn1, self.act1 = bn(w(32)), torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(w(32), w(64), 3, bias=False)
        self.bn2, self.act2 = bn(w(64)), torch.nn.ReLU()
        options = {"eps": eps, "pool": pool}
        self.block1 = TorchBlock(w(64), w(128), 2, 2, start_with_relu=False, **options)
        self.block2 = TorchBlock(w(128), w(256), 2, 2, **options)
        self.block3 = TorchBlock(w(256), w(728), 2, 2, **options)
        for i in range(middle):
            setattr(self, f"block{4 + i}", TorchBlock(w(728), w(728), 3, 1, **options))
        setattr(
            self,
            f"block{4 + middle}",
            TorchBlock(w(728), w(1024), 2, 2, grow_first=False, **options),
        )
        self.conv3, self.bn3, self.act3 = (
            TorchSeparable(w(1024), w(1536)),
            bn(w(1536)),
            torch.nn.ReLU(),
        )
        self.conv4, self.bn4, self.act4 = (
            TorchSeparable(w(1536), w(2048)),
            bn(w(2048)),
            torch.nn.ReLU(),
        )
        self.fc = torch.nn.Linear(w(2048), num_classes)

    def forward(self, x):
        for name, module in self.named_children():
            if name == "fc":
                x = x.mean(dim=(2, 3))
            x = module(x)
        return x


TORCH_POOLS = {"keras": (1e-3, TorchSamePool), "timm": (1e-5, lambda: torch.nn.MaxPool2d(3, 2, 1))}


def torch_twin(model, flavor, width, middle, num_classes, in_channels, dtype):
    eps, pool = TORCH_POOLS[flavor]
    twin = TorchXception(width, middle, num_classes, in_channels, eps, pool)
    twin.to(torch.float64 if dtype == np.float64 else torch.float32)  # before loading: no rounding
    names = zoo.timm_key_map(model)
    state = {names[k]: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin.eval()


@pytest.mark.parametrize("flavor", ["keras", "timm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_xception_matches_pytorch(flavor, dtype):
    width, middle = 1 / 16, 2
    model = zoo.xception(
        num_classes=7,
        in_channels=3,
        width=width,
        middle_blocks=middle,
        flavor=flavor,
        dtype=dtype,
        seed=1,
    )
    set_batchnorm_state(model, np.random.default_rng(2))
    model.eval()
    twin = torch_twin(model, flavor, width, middle, 7, 3, dtype)
    # 35 px: pools at 15 -> 8 (even padding) then 8 -> 4, 4 -> 2, 2 -> 1 (odd: TF pads after).
    x = np.random.default_rng(3).standard_normal((3, 3, 35, 35)).astype(dtype)
    ours = model(x)
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    assert np.abs(theirs).max() > 0.1
    if dtype == np.float32:
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_xception_flavors_differ_only_by_their_presets():
    keras = zoo.xception(width=1 / 16, middle_blocks=1, flavor="keras", seed=4)
    timm = zoo.xception(width=1 / 16, middle_blocks=1, flavor="timm", seed=4)
    assert keras.bn1.eps == 1e-3 and timm.bn1.eps == 1e-5
    assert keras.bn1.momentum == 0.01 and timm.bn1.momentum == 0.1
    assert keras.block1.rep[-1].padding == "same" and timm.block1.rep[-1].padding == (1, 1)
    custom = zoo.xception(width=1 / 16, middle_blocks=1, flavor="timm", bn_eps=1e-4)
    assert custom.bn1.eps == 1e-4 and custom.block1.rep[-1].padding == (1, 1)
    # Same weights, different pool alignment at 74 -> 37: different logits.
    timm.load_state_dict(keras.state_dict())
    x = np.random.default_rng(5).standard_normal((1, 3, 75, 75)).astype(np.float32)
    assert not np.allclose(keras.eval()(x), timm.eval()(x))


def test_load_timm_state_dict_round_trip():
    model = zoo.xception(num_classes=3, width=1 / 16, middle_blocks=1, flavor="timm", seed=6)
    set_batchnorm_state(model, np.random.default_rng(7))
    twin = torch_twin(model, "timm", 1 / 16, 1, 3, 3, np.float32)
    assert "block1.rep.0.conv1.weight" in twin.state_dict()
    assert "block2.rep.1.pointwise.weight" in twin.state_dict()
    fresh = zoo.xception(num_classes=3, width=1 / 16, middle_blocks=1, flavor="timm", seed=8)
    zoo.load_timm_state_dict(fresh, twin.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value, err_msg=key)


class TorchBasicBlock(torch.nn.Module):
    """torchvision's BasicBlock names: conv1, bn1, conv2, bn2, downsample."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def test_resnet20_matches_pytorch():
    model = zoo.resnet20(num_classes=10, in_channels=3, seed=2)
    set_batchnorm_state(model, np.random.default_rng(3))
    model.eval()
    twin = torch.nn.Module()
    twin.conv1 = torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    twin.bn1 = torch.nn.BatchNorm2d(16)
    cin = 16
    for stage, cout in enumerate((16, 32, 64), start=1):
        blocks = [
            TorchBasicBlock(cin if b == 0 else cout, cout, 2 if stage > 1 and b == 0 else 1)
            for b in range(3)
        ]
        setattr(twin, f"layer{stage}", torch.nn.Sequential(*blocks))
        cin = cout
    twin.fc = torch.nn.Linear(64, 10)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    twin.eval()
    x = np.random.default_rng(4).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        h = torch.relu(twin.bn1(twin.conv1(torch.from_numpy(x))))
        h = twin.layer3(twin.layer2(twin.layer1(h)))
        theirs = twin.fc(h.mean(dim=(2, 3))).numpy()
    np.testing.assert_allclose(model(x), theirs, rtol=1e-4, atol=1e-5)
