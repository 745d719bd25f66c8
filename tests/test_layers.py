"""Every cnnkit.nn layer against its torch.nn twin on identical weights and inputs.

The torch module is initialised by torch (then perturbed so that batch-norm affine parameters and
running statistics are not trivial) and copied into the cnnkit module through load_state_dict, so
the state_dict keys are part of every comparison. Two training steps accumulate gradients and
update running statistics; an eval step follows. Then: state dicts, modes, repr, initialisation,
dtypes and numerical gradient checks of every layer and of a small CNN end to end.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import cnnkit.nn as nn
from cnnkit.gradcheck import assert_gradcheck, gradcheck

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")
tnn = torch.nn

DTYPES = [np.float64, np.float32]
TORCH_DTYPE = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}
TOL = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
}


def check(ours, theirs, dtype, what: str = "") -> None:
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach().numpy()
    assert isinstance(ours, np.ndarray), f"{what}: got {type(ours).__name__}"
    assert ours.dtype == np.dtype(dtype), f"{what}: dtype {ours.dtype}, expected {dtype}"
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, torch {theirs.shape}"
    tolerance = TOL.get(np.dtype(dtype), {"rtol": 0, "atol": 0})  # integers: exact
    np.testing.assert_allclose(ours, theirs, err_msg=what, **tolerance)


def numpy_state(module) -> dict[str, np.ndarray]:
    """A torch state_dict converted with .numpy(), as a user would load it into cnnkit."""
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def perturb_(module, seed: int = 0):
    """Give every torch parameter and batch-norm statistic a non-trivial value, reproducibly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=generator))
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=generator) + 0.5)
    return module


class TorchSeparable(tnn.Module):
    """Depthwise then pointwise convolution with cnnkit's attribute names."""

    def __init__(self, cin, cout, k, stride=1, padding=0, dilation=1, multiplier=1, bias=True):
        super().__init__()
        self.depthwise = tnn.Conv2d(
            cin, cin * multiplier, k, stride, padding, dilation, groups=cin, bias=False
        )
        self.pointwise = tnn.Conv2d(cin * multiplier, cout, 1, bias=bias)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class TorchResidual(tnn.Module):
    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class TorchGlobalAvgPool(tnn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def small_cnn_pair(dtype, seed=0):
    """conv-bn-relu-pool-separable conv-residual-global pool-linear, in cnnkit and in torch."""
    rng = np.random.default_rng(seed)
    ours = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False, dtype=dtype, rng=rng),
        nn.BatchNorm2d(4, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.SeparableConv2d(4, 6, 3, padding="same", dtype=dtype, rng=rng),
        nn.Residual(
            nn.Sequential(
                nn.Conv2d(6, 6, 3, padding=1, bias=False, dtype=dtype, rng=rng),
                nn.BatchNorm2d(6, dtype=dtype),
                nn.Tanh(),
            )
        ),
        nn.GlobalAvgPool2d(),
        nn.Linear(6, 3, dtype=dtype, rng=rng),
    )
    torch.manual_seed(seed)
    theirs = tnn.Sequential(
        tnn.Conv2d(2, 4, 3, padding=1, bias=False),
        tnn.BatchNorm2d(4),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        TorchSeparable(4, 6, 3, padding="same"),
        TorchResidual(
            tnn.Sequential(
                tnn.Conv2d(6, 6, 3, padding=1, bias=False), tnn.BatchNorm2d(6), tnn.Tanh()
            )
        ),
        TorchGlobalAvgPool(),
        tnn.Linear(6, 3),
    )
    return ours, theirs


# Each entry builds (cnnkit layer, torch layer) for a dtype, and gives the input shape.
LAYERS = {
    "Conv2d": (
        lambda d: (nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=d), tnn.Conv2d(3, 4, 3, 2, 1)),
        (2, 3, 7, 6),
    ),
    "Conv2d_same_dilated_grouped_nobias": (
        lambda d: (
            nn.Conv2d(4, 6, (2, 3), padding="same", dilation=2, groups=2, bias=False, dtype=d),
            tnn.Conv2d(4, 6, (2, 3), padding="same", dilation=2, groups=2, bias=False),
        ),
        (2, 4, 6, 7),
    ),
    "Conv2d_depthwise": (
        lambda d: (
            nn.Conv2d(4, 4, 3, padding=1, groups=4, dtype=d),
            tnn.Conv2d(4, 4, 3, 1, 1, groups=4),
        ),
        (2, 4, 5, 6),
    ),
    "Conv2d_depth_multiplier": (
        lambda d: (
            nn.Conv2d(3, 6, (3, 2), stride=(1, 2), groups=3, dtype=d),
            tnn.Conv2d(3, 6, (3, 2), stride=(1, 2), groups=3),
        ),
        (2, 3, 6, 7),
    ),
    "SeparableConv2d": (
        lambda d: (
            nn.SeparableConv2d(3, 5, 3, padding=1, depth_multiplier=2, dtype=d),
            TorchSeparable(3, 5, 3, padding=1, multiplier=2),
        ),
        (2, 3, 6, 5),
    ),
    "SeparableConv2d_strided_nobias": (
        lambda d: (
            nn.SeparableConv2d(4, 3, (3, 2), stride=2, dilation=(1, 2), bias=False, dtype=d),
            TorchSeparable(4, 3, (3, 2), stride=2, dilation=(1, 2), bias=False),
        ),
        (2, 4, 8, 9),
    ),
    "MaxPool2d": (lambda d: (nn.MaxPool2d(3, 2, 1), tnn.MaxPool2d(3, 2, 1)), (2, 3, 7, 8)),
    "MaxPool2d_default_stride": (lambda d: (nn.MaxPool2d(2), tnn.MaxPool2d(2)), (2, 3, 6, 7)),
    "AvgPool2d": (
        lambda d: (
            nn.AvgPool2d(3, 2, 1, count_include_pad=False),
            tnn.AvgPool2d(3, 2, 1, count_include_pad=False),
        ),
        (2, 3, 7, 6),
    ),
    "AvgPool2d_include_pad": (
        lambda d: (nn.AvgPool2d((2, 3), 1, (1, 1)), tnn.AvgPool2d((2, 3), 1, (1, 1))),
        (2, 3, 5, 6),
    ),
    "AdaptiveAvgPool2d": (
        lambda d: (nn.AdaptiveAvgPool2d((3, 2)), tnn.AdaptiveAvgPool2d((3, 2))),
        (2, 3, 7, 5),
    ),
    "GlobalAvgPool2d": (lambda d: (nn.GlobalAvgPool2d(), TorchGlobalAvgPool()), (2, 3, 4, 5)),
    "Linear": (lambda d: (nn.Linear(6, 4, dtype=d), tnn.Linear(6, 4)), (5, 6)),
    "Linear_nobias": (
        lambda d: (nn.Linear(6, 4, bias=False, dtype=d), tnn.Linear(6, 4, bias=False)),
        (5, 6),
    ),
    "Flatten": (lambda d: (nn.Flatten(), tnn.Flatten()), (2, 3, 4, 5)),
    "Flatten_start_dim2": (lambda d: (nn.Flatten(2), tnn.Flatten(2)), (2, 3, 4, 5)),
    "Identity": (lambda d: (nn.Identity(), tnn.Identity()), (2, 3, 4)),
    "ReLU": (lambda d: (nn.ReLU(), tnn.ReLU()), (3, 4, 5)),
    "LeakyReLU": (lambda d: (nn.LeakyReLU(0.2), tnn.LeakyReLU(0.2)), (3, 4, 5)),
    "Sigmoid": (lambda d: (nn.Sigmoid(), tnn.Sigmoid()), (3, 4, 5)),
    "Tanh": (lambda d: (nn.Tanh(), tnn.Tanh()), (3, 4, 5)),
    "Softmax": (lambda d: (nn.Softmax(dim=1), tnn.Softmax(dim=1)), (3, 4, 5)),
    "LogSoftmax": (lambda d: (nn.LogSoftmax(dim=1), tnn.LogSoftmax(dim=1)), (3, 4, 5)),
    "BatchNorm1d_2d_input": (
        lambda d: (nn.BatchNorm1d(4, dtype=d), tnn.BatchNorm1d(4)),
        (6, 4),
    ),
    "BatchNorm1d_3d_input": (
        lambda d: (nn.BatchNorm1d(4, momentum=0.3, dtype=d), tnn.BatchNorm1d(4, momentum=0.3)),
        (3, 4, 5),
    ),
    "BatchNorm2d": (
        lambda d: (
            nn.BatchNorm2d(3, eps=1e-3, momentum=0.2, dtype=d),
            tnn.BatchNorm2d(3, 1e-3, 0.2),
        ),
        (4, 3, 5, 6),
    ),
    "BatchNorm2d_no_affine": (
        lambda d: (nn.BatchNorm2d(3, affine=False, dtype=d), tnn.BatchNorm2d(3, affine=False)),
        (4, 3, 5, 6),
    ),
    "BatchNorm2d_no_running_stats": (
        lambda d: (
            nn.BatchNorm2d(3, track_running_stats=False, dtype=d),
            tnn.BatchNorm2d(3, track_running_stats=False),
        ),
        (4, 3, 5, 6),
    ),
    "Sequential": (
        lambda d: (
            nn.Sequential(
                nn.Conv2d(2, 3, 3, padding=1, bias=False, dtype=d),
                nn.BatchNorm2d(3, dtype=d),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(12, 5, dtype=d),
            ),
            tnn.Sequential(
                tnn.Conv2d(2, 3, 3, padding=1, bias=False),
                tnn.BatchNorm2d(3),
                tnn.ReLU(),
                tnn.MaxPool2d(2),
                tnn.Flatten(),
                tnn.Linear(12, 5),
            ),
        ),
        (3, 2, 4, 4),
    ),
    "Residual_identity": (
        lambda d: (
            nn.Residual(
                nn.Sequential(
                    nn.Conv2d(3, 3, 3, padding=1, bias=False, dtype=d),
                    nn.BatchNorm2d(3, dtype=d),
                    nn.ReLU(),
                    nn.Conv2d(3, 3, 3, padding=1, dtype=d),
                )
            ),
            TorchResidual(
                tnn.Sequential(
                    tnn.Conv2d(3, 3, 3, padding=1, bias=False),
                    tnn.BatchNorm2d(3),
                    tnn.ReLU(),
                    tnn.Conv2d(3, 3, 3, padding=1),
                )
            ),
        ),
        (2, 3, 5, 4),
    ),
    "Residual_projection": (
        lambda d: (
            nn.Residual(
                nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1, dtype=d), nn.ReLU()),
                nn.Sequential(
                    nn.Conv2d(3, 5, 1, stride=2, bias=False, dtype=d), nn.BatchNorm2d(5, dtype=d)
                ),
            ),
            TorchResidual(
                tnn.Sequential(tnn.Conv2d(3, 5, 3, 2, 1), tnn.ReLU()),
                tnn.Sequential(tnn.Conv2d(3, 5, 1, 2, bias=False), tnn.BatchNorm2d(5)),
            ),
        ),
        (2, 3, 6, 7),
    ),
    "small_cnn": (lambda d: small_cnn_pair(d), (3, 2, 6, 6)),
}


def build_pair(name, dtype, seed=0):
    torch.manual_seed(seed)
    builder, shape = LAYERS[name]
    ours, theirs = builder(dtype)
    theirs = perturb_(theirs.to(TORCH_DTYPE[np.dtype(dtype)]), seed)
    ours.load_state_dict(numpy_state(theirs))
    return ours, theirs, shape


def compare_step(ours, theirs, x, dout, dtype, what):
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(dout))
    out = ours(x)
    dx = ours.backward(dout)
    check(out, yt, dtype, f"{what}: output")
    check(dx, xt.grad, dtype, f"{what}: dL/dx")
    theirs_params = dict(theirs.named_parameters())
    ours_params = dict(ours.named_parameters())
    assert list(ours_params) == list(theirs_params)
    for name, p in ours_params.items():
        check(p.grad, theirs_params[name].grad, dtype, f"{what}: dL/d{name}")
    theirs_buffers = dict(theirs.named_buffers())
    for name, b in ours.named_buffers():
        expected_dtype = np.int64 if name.endswith("num_batches_tracked") else dtype
        check(np.asarray(b), theirs_buffers[name], expected_dtype, f"{what}: buffer {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_torch(name, dtype, rng):
    ours, theirs, shape = build_pair(name, dtype)
    theirs.eval()  # eval: finding the output shape must not move torch's running statistics
    with torch.no_grad():
        out_shape = tuple(theirs(torch.zeros(shape, dtype=TORCH_DTYPE[np.dtype(dtype)])).shape)
    theirs.train()
    # two training steps: gradients accumulate, running statistics move twice
    for step in range(2):
        x = rng.standard_normal(shape).astype(dtype)
        dout = rng.standard_normal(out_shape).astype(dtype)
        compare_step(ours, theirs, x, dout, dtype, f"{name} train step {step}")
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(out_shape).astype(dtype)
    compare_step(ours, theirs, x, dout, dtype, f"{name} eval step")
    ours.zero_grad()
    assert all(not p.grad.any() for p in ours.parameters())


# --------------------------------------------------------------------------------------------
# losses as modules
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_modules_match_torch(reduction, dtype, rng):
    logits = rng.standard_normal((6, 4)).astype(dtype)
    labels = rng.integers(0, 4, 6)
    ce = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.2)
    loss = ce(logits, labels)
    grad = ce.backward()
    zt = torch.tensor(logits, requires_grad=True)
    loss_t = tnn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.2)(
        zt, torch.tensor(labels)
    )
    loss_t.backward()
    np.testing.assert_allclose(loss, loss_t.item(), **TOL[np.dtype(dtype)])
    check(grad, zt.grad, dtype, "CrossEntropyLoss gradient")

    target = rng.standard_normal((6, 4)).astype(dtype)
    mse = nn.MSELoss(reduction=reduction)
    loss = mse(logits, target)
    grad = mse.backward(2.0)
    pt = torch.tensor(logits, requires_grad=True)
    loss_t = tnn.MSELoss(reduction=reduction)(pt, torch.tensor(target))
    (2 * loss_t).backward()
    np.testing.assert_allclose(loss, loss_t.item(), **TOL[np.dtype(dtype)])
    check(grad, pt.grad, dtype, "MSELoss gradient")


def test_small_cnn_with_cross_entropy_matches_torch(rng):
    ours, theirs, shape = build_pair("small_cnn", np.float64, seed=3)
    x = rng.standard_normal(shape)
    labels = rng.integers(0, 3, shape[0])
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(ours(x), labels)
    ours.backward(loss_fn.backward())
    xt = torch.tensor(x)
    loss_t = tnn.functional.cross_entropy(theirs(xt), torch.tensor(labels))
    loss_t.backward()
    np.testing.assert_allclose(loss, loss_t.item(), rtol=1e-10)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        check(p.grad, theirs_params[name].grad, np.float64, f"dL/d{name}")


# --------------------------------------------------------------------------------------------
# dropout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_layer_train_eval_and_determinism(dtype, rng):
    x = rng.uniform(0.5, 1.5, (40, 30, 5)).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    layer = nn.Dropout(0.3, rng=np.random.default_rng(11))
    out = layer(x)
    dx = layer.backward(dout)
    kept = out != 0
    assert out.dtype == dx.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out[kept], x[kept] / dtype(0.7), rtol=1e-6)
    np.testing.assert_allclose(dx, np.where(kept, dout / dtype(0.7), 0), rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 5 * math.sqrt(0.21 / x.size)
    again = nn.Dropout(0.3, rng=np.random.default_rng(11))(x)
    np.testing.assert_array_equal(again, out)  # the same generator seed gives the same mask
    assert not np.array_equal(layer(x), out)  # the next call draws a fresh mask

    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(dout), dout)
    layer.train()
    for p in (0.0, 1.0):
        layer = nn.Dropout(p, rng=np.random.default_rng(0))
        expected = tnn.Dropout(p)(torch.tensor(x))
        check(layer(x), expected, dtype, f"Dropout(p={p})")
        check(layer.backward(dout), dout * (1 - p), dtype, f"Dropout(p={p}) gradient")


# --------------------------------------------------------------------------------------------
# state dicts
# --------------------------------------------------------------------------------------------


def test_state_dict_keys_equal_torch_for_the_same_module_tree():
    ours, theirs = small_cnn_pair(np.float32)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)  # same keys in the same order
    for key, value in theirs_state.items():
        assert ours_state[key].shape == tuple(value.shape), key
    assert "1.num_batches_tracked" in ours_state
    assert ours_state["1.num_batches_tracked"].dtype == np.int64
    names = [name for name, _ in ours.named_parameters()]
    assert names == [name for name, _ in theirs.named_parameters()]


@pytest.mark.parametrize("dtype", DTYPES)
def test_load_state_dict_from_torch_reproduces_torch_outputs(dtype, rng):
    ours, theirs = small_cnn_pair(dtype, seed=1)
    theirs = perturb_(theirs.to(TORCH_DTYPE[np.dtype(dtype)]), seed=1)
    before = ours(rng.standard_normal((2, 2, 6, 6)).astype(dtype))
    ours.load_state_dict(numpy_state(theirs))
    for mode in ("eval", "train"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        x = rng.standard_normal((4, 2, 6, 6)).astype(dtype)
        with torch.no_grad():
            expected = theirs(torch.tensor(x))
        check(ours(x), expected, dtype, f"{mode} output after load_state_dict")
        assert not np.allclose(ours(x)[:2], before)
    # and back: torch loads cnnkit's state dict (strict) and agrees
    fresh = small_cnn_pair(dtype, seed=9)[1].to(TORCH_DTYPE[np.dtype(dtype)])
    fresh.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    ours.eval()
    fresh.eval()
    x = rng.standard_normal((3, 2, 6, 6)).astype(dtype)
    with torch.no_grad():
        check(ours(x), fresh(torch.tensor(x)), dtype, "torch output after loading cnnkit's state")


def test_state_dict_holds_copies_and_load_copies_in(rng):
    layer = nn.Conv2d(2, 3, 3, rng=rng)
    state = layer.state_dict()
    state["weight"][...] = 7
    assert not np.any(layer.weight.data == 7)
    source = {"weight": np.full((3, 2, 3, 3), 2.0), "bias": np.arange(3.0)}
    layer.load_state_dict(source)
    source["weight"][...] = 5
    assert np.all(layer.weight.data == 2)
    assert layer.weight.data.dtype == np.float32  # loading casts into the layer's dtype
    np.testing.assert_array_equal(layer.bias.data, [0, 1, 2])


def test_load_state_dict_non_strict_loads_the_keys_it_has(rng):
    model = nn.Sequential(nn.Linear(3, 2, rng=rng), nn.BatchNorm1d(2))
    model.load_state_dict({"0.bias": np.array([1.0, 2.0]), "9.extra": np.zeros(1)}, strict=False)
    np.testing.assert_array_equal(model[0].bias.data, [1, 2])


def test_batchnorm_num_batches_tracked_counts_like_torch(rng):
    ours, theirs = nn.BatchNorm2d(3), tnn.BatchNorm2d(3)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
        ours(x)
        theirs(torch.tensor(x))
    ours.eval()
    theirs.eval()
    ours(x)
    theirs(torch.tensor(x))
    assert int(ours.state_dict()["num_batches_tracked"]) == int(theirs.num_batches_tracked) == 3


# --------------------------------------------------------------------------------------------
# modes, repr, dtypes
# --------------------------------------------------------------------------------------------


def test_train_and_eval_switch_every_submodule(rng):
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, rng=rng),
        nn.BatchNorm2d(3),
        nn.Residual(nn.Sequential(nn.Dropout(0.5, rng=rng), nn.ReLU())),
    )
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(model(x), model(x))  # no dropout, running statistics
    model.train()
    assert all(m.training for m in model.modules())
    assert not np.array_equal(model(x), model(x))  # dropout draws a new mask
    model.train(False)
    assert not any(m.training for m in model.modules())


def test_repr_matches_torch_where_torch_has_the_same_layer():
    pairs = [
        (nn.Conv2d(3, 16, 3), tnn.Conv2d(3, 16, 3)),
        (
            nn.Conv2d(4, 8, (3, 5), stride=2, padding=(1, 2), dilation=2, groups=2, bias=False),
            tnn.Conv2d(4, 8, (3, 5), stride=2, padding=(1, 2), dilation=2, groups=2, bias=False),
        ),
        (nn.Linear(4, 2), tnn.Linear(4, 2)),
        (nn.Linear(4, 2, bias=False), tnn.Linear(4, 2, bias=False)),
        (nn.ReLU(), tnn.ReLU()),
        (nn.LeakyReLU(0.2), tnn.LeakyReLU(0.2)),
        (nn.Sigmoid(), tnn.Sigmoid()),
        (nn.Tanh(), tnn.Tanh()),
        (nn.Softmax(dim=1), tnn.Softmax(dim=1)),
        (nn.LogSoftmax(dim=1), tnn.LogSoftmax(dim=1)),
        (nn.AdaptiveAvgPool2d((3, 2)), tnn.AdaptiveAvgPool2d((3, 2))),
        (
            nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Linear(4, 2)),
            tnn.Sequential(tnn.Conv2d(3, 4, 3, padding=1), tnn.ReLU(), tnn.Linear(4, 2)),
        ),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


def test_repr_shows_the_constructor_arguments():
    expectations = {
        nn.BatchNorm2d(8, eps=1e-3, momentum=0.2): ["BatchNorm2d(8", "eps=0.001", "momentum=0.2"],
        nn.BatchNorm1d(4, affine=False): ["BatchNorm1d(4", "affine=False"],
        nn.MaxPool2d(3, 2, 1): ["MaxPool2d(", "kernel_size=(3, 3)", "stride=(2, 2)", "(1, 1)"],
        nn.AvgPool2d(2, count_include_pad=False): ["AvgPool2d(", "count_include_pad=False"],
        nn.Dropout(0.3): ["Dropout(p=0.3, inplace=False)"],
        nn.Flatten(2): ["Flatten(start_dim=2)"],
        nn.GlobalAvgPool2d(): ["GlobalAvgPool2d()"],
        nn.Conv2d(3, 4, 3, padding="same"): ["padding='same'"],
        nn.SeparableConv2d(3, 4, 3, depth_multiplier=2): [
            "(depthwise): Conv2d(3, 6, kernel_size=(3, 3)",
            "groups=3, bias=False",
            "(pointwise): Conv2d(6, 4, kernel_size=(1, 1)",
        ],
        nn.Residual(nn.ReLU()): ["Residual(", "(body): ReLU()"],
        nn.CrossEntropyLoss(label_smoothing=0.1): ["CrossEntropyLoss(", "label_smoothing=0.1"],
        nn.MSELoss(reduction="sum"): ["MSELoss(reduction='sum')"],
    }
    for module, parts in expectations.items():
        text = repr(module)
        for part in parts:
            assert part in text, f"{part!r} not in {text!r}"


@pytest.mark.parametrize("name", list(LAYERS))
def test_float32_in_float32_out_and_float64_on_request(name, rng):
    for dtype in DTYPES:
        ours, _, shape = build_pair(name, dtype)
        assert all(p.dtype == np.dtype(dtype) for p in ours.parameters())
        out = ours(rng.standard_normal(shape).astype(dtype))
        dx = ours.backward(np.ones_like(out))
        assert out.dtype == dx.dtype == np.dtype(dtype)
        assert all(p.grad.dtype == np.dtype(dtype) for p in ours.parameters())


def test_to_casts_parameters_and_buffers(rng):
    ours, theirs = small_cnn_pair(np.float32, seed=4)
    theirs = perturb_(theirs, seed=4)
    ours.load_state_dict(numpy_state(theirs))
    assert ours.to(np.float64) is ours
    for key, value in ours.state_dict().items():
        expected = np.int64 if key.endswith("num_batches_tracked") else np.float64
        assert value.dtype == expected, key
    theirs.double()
    x = rng.standard_normal((2, 2, 6, 6))
    with torch.no_grad():
        expected = theirs(torch.tensor(x))
    np.testing.assert_allclose(ours(x), expected.numpy(), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# initialisation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_ours, make_theirs, fan_in",
    [
        (lambda rng: nn.Conv2d(16, 64, 5, rng=rng), lambda: tnn.Conv2d(16, 64, 5), 16 * 25),
        (
            lambda rng: nn.Conv2d(32, 32, 3, groups=4, rng=rng),
            lambda: tnn.Conv2d(32, 32, 3, groups=4),
            8 * 9,
        ),
        (lambda rng: nn.Linear(300, 200, rng=rng), lambda: tnn.Linear(300, 200), 300),
    ],
)
def test_default_init_follows_torch(make_ours, make_theirs, fan_in, rng):
    ours = make_ours(rng)
    torch.manual_seed(0)
    theirs = make_theirs()
    bound = 1 / math.sqrt(fan_in)
    w, b = ours.weight.data, ours.bias.data
    w_t = theirs.weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.99 * bound
    # U(-bound, bound) has standard deviation bound / sqrt(3); torch's draw agrees with ours
    np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.03)
    np.testing.assert_allclose(w.std(), w_t.std(), rtol=0.05)
    assert abs(w.mean()) < 5 * bound / math.sqrt(3 * w.size)
    same = make_ours(np.random.default_rng(5)).weight.data
    np.testing.assert_array_equal(same, make_ours(np.random.default_rng(5)).weight.data)
    assert not np.array_equal(same, make_ours(np.random.default_rng(6)).weight.data)


def test_default_batchnorm_state_equals_torch():
    ours = nn.BatchNorm2d(5).state_dict()
    for key, value in tnn.BatchNorm2d(5).state_dict().items():
        np.testing.assert_array_equal(ours[key], value.numpy())


INIT_CASES = [
    ("kaiming_uniform_", {}, {}),
    ("kaiming_uniform_", {"a": 0.2, "mode": "fan_out"}, {"a": 0.2, "mode": "fan_out"}),
    ("kaiming_uniform_", {"nonlinearity": "relu"}, {"nonlinearity": "relu"}),
    ("kaiming_normal_", {}, {}),
    (
        "kaiming_normal_",
        {"mode": "fan_out", "nonlinearity": "relu"},
        {"mode": "fan_out", "nonlinearity": "relu"},
    ),
    ("kaiming_normal_", {"nonlinearity": "tanh"}, {"nonlinearity": "tanh"}),
    ("xavier_uniform_", {}, {}),
    ("xavier_uniform_", {"gain": 2.0}, {"gain": 2.0}),
    ("xavier_normal_", {}, {}),
    ("xavier_normal_", {"gain": 0.5}, {"gain": 0.5}),
]


@pytest.mark.parametrize("shape", [(64, 32, 3, 3), (300, 500)])
@pytest.mark.parametrize("fn, ours_kwargs, torch_kwargs", INIT_CASES)
def test_init_functions_match_torch_statistics(fn, ours_kwargs, torch_kwargs, shape, rng):
    fan_in, fan_out = tnn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert nn.init.fan_in_and_fan_out(shape) == (fan_in, fan_out)
    ours = np.empty(shape)
    assert getattr(nn.init, fn)(ours, rng, **ours_kwargs) is ours
    torch.manual_seed(0)
    theirs = getattr(tnn.init, fn)(torch.empty(shape, dtype=torch.float64), **torch_kwargs).numpy()
    # the standard deviation each formula promises, computed here from the torch docs
    if fn.startswith("kaiming"):
        fan = fan_out if ours_kwargs.get("mode") == "fan_out" else fan_in
        gain = tnn.init.calculate_gain(
            ours_kwargs.get("nonlinearity", "leaky_relu"), ours_kwargs.get("a", 0)
        )
        std = gain / math.sqrt(fan)
    else:
        std = ours_kwargs.get("gain", 1.0) * math.sqrt(2 / (fan_in + fan_out))
    np.testing.assert_allclose(ours.std(), std, rtol=0.02)
    np.testing.assert_allclose(ours.std(), theirs.std(), rtol=0.03)
    assert abs(ours.mean()) < 5 * std / math.sqrt(ours.size)
    if fn.endswith("uniform_"):
        bound = math.sqrt(3) * std
        assert np.abs(ours).max() <= bound
        assert np.abs(ours).max() > 0.999 * bound
        assert np.abs(theirs).max() <= bound * (1 + 1e-12)
    else:  # normal: about 31.7 % of the draws lie beyond one standard deviation
        np.testing.assert_allclose((np.abs(ours) > std).mean(), 0.3173, atol=0.01)


@pytest.mark.parametrize(
    "nonlinearity, param",
    [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
     ("leaky_relu", None), ("leaky_relu", 0.2)],
)  # fmt: skip
def test_calculate_gain_matches_torch(nonlinearity, param):
    expected = tnn.init.calculate_gain(nonlinearity, param)
    assert nn.init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------
# numerical gradient checks (float64)
# --------------------------------------------------------------------------------------------

# Flatten and Identity are reshapes, compared with torch above. No conv bias feeds a batch norm in
# these models: its exact gradient is 0 and gradcheck's relative error would divide
# central-difference noise (~1e-10) by its 1e-7 floor.
GRADCHECK_SKIP = {"Flatten", "Flatten_start_dim2", "Identity"}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", sorted(set(LAYERS) - GRADCHECK_SKIP - {"small_cnn"}))
def test_gradcheck_layer(name, mode, rng):
    ours, _, shape = build_pair(name, np.float64, seed=2)
    ours.train(mode == "train")
    x = rng.standard_normal(shape)
    report = gradcheck(ours, x, max_per_array=25)
    assert report.checked > 0
    assert report.passed, str(report)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradcheck_small_cnn_end_to_end(mode, rng):
    model, _ = small_cnn_pair(np.float64, seed=5)
    model.train(mode == "train")
    x = rng.standard_normal((3, 2, 6, 6))
    report = assert_gradcheck(model, x, max_per_array=20)
    assert report.checked > 100


class LinearWithWrongInputGradient(nn.Linear):
    def backward(self, dout):
        return 2 * super().backward(dout)


class LinearWithWrongWeightGradient(nn.Linear):
    def backward(self, dout):
        dx = super().backward(dout)
        self.weight.grad *= 0.9
        return dx


class ReLUWithoutMask(nn.ReLU):
    def backward(self, dout):
        self._take_cache()
        return dout


@pytest.mark.parametrize(
    "make, where",
    [
        (lambda rng: LinearWithWrongInputGradient(4, 3, dtype=np.float64, rng=rng), "input"),
        (lambda rng: LinearWithWrongWeightGradient(4, 3, dtype=np.float64, rng=rng), "weight"),
        (
            lambda rng: nn.Sequential(
                nn.Linear(4, 3, dtype=np.float64, rng=rng), ReLUWithoutMask()
            ),
            "",
        ),
    ],
)
def test_gradcheck_detects_a_wrong_backward(make, where, rng):
    module = make(rng)
    x = rng.standard_normal((5, 4))
    report = gradcheck(module, x)
    assert not report.passed
    assert report.max_rel_error > 1e-2
    assert where in report.where
    with pytest.raises(AssertionError, match="gradcheck FAILED"):
        assert_gradcheck(module, x)
