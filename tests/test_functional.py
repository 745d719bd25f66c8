"""Every functional kernel against PyTorch: forward and all gradients, float64 and float32.

Each test builds the same inputs for cnnkit.functional and torch.nn.functional, runs torch's
autograd with the same upstream gradient, and compares outputs and gradients: float64 to
rtol 1e-10, float32 to rtol 1e-4. The end of the file checks every op with numerical gradients.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from checks import PARITY_TOL as TOL

import cnnkit.functional as F
from cnnkit.functional import _args as args_module
from cnnkit.functional import conv as conv_module
from cnnkit.gradcheck import gradcheck

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")
TF = torch.nn.functional

DTYPES = [np.float64, np.float32]


def tt(a: np.ndarray):
    """A torch leaf tensor holding a copy of ``a`` that records gradients."""
    return torch.tensor(np.ascontiguousarray(a), requires_grad=True)


def check(ours, theirs, dtype, what: str = "", tolerance=None) -> None:
    """ours has the expected dtype and shape and equals theirs to the dtype's tolerance (or the
    ``tolerance`` given)."""
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach().numpy()
    assert isinstance(ours, np.ndarray), f"{what}: got {type(ours).__name__}"
    assert ours.dtype == np.dtype(dtype), f"{what}: dtype {ours.dtype}, expected {dtype}"
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, torch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, err_msg=what, **(tolerance or TOL[np.dtype(dtype)]))


def randn(rng, shape, dtype=np.float64) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------------------------

CONV_CASES = {
    "basic": dict(n=2, cin=3, h=7, w=9, cout=4, k=3, stride=1, padding=0),
    "stride2_pad1": dict(n=2, cin=3, h=8, w=7, cout=5, k=3, stride=2, padding=1),
    "pair_padding_asym_kernel": dict(
        n=2, cin=2, h=6, w=9, cout=3, k=(2, 3), stride=(2, 1), padding=(1, 2)
    ),
    "valid": dict(n=1, cin=3, h=6, w=5, cout=2, k=(3, 2), stride=1, padding="valid"),
    "same_odd": dict(n=2, cin=3, h=5, w=8, cout=4, k=3, stride=1, padding="same"),
    "same_even_asym": dict(n=2, cin=2, h=6, w=7, cout=3, k=(2, 4), stride=1, padding="same"),
    "same_dilated": dict(n=1, cin=2, h=7, w=6, cout=2, k=3, padding="same", dilation=(2, 3)),
    "dilation2": dict(n=2, cin=3, h=9, w=8, cout=4, k=3, stride=1, padding=2, dilation=2),
    "dilation_pair_stride": dict(
        n=2, cin=2, h=10, w=9, cout=3, k=(3, 2), stride=(2, 3), padding=1, dilation=(2, 1)
    ),
    "groups2": dict(n=2, cin=4, h=6, w=7, cout=6, k=3, padding=1, groups=2),
    "groups3_stride": dict(n=2, cin=6, h=7, w=8, cout=3, k=(3, 2), stride=2, groups=3),
    "depthwise": dict(n=2, cin=3, h=7, w=6, cout=3, k=3, padding=1, groups=3),
    "depthwise_strided_dilated": dict(
        n=2, cin=4, h=9, w=10, cout=4, k=(3, 2), stride=2, padding=1, dilation=2, groups=4
    ),
    "depth_multiplier": dict(n=2, cin=3, h=6, w=7, cout=6, k=3, padding=1, groups=3),
    "no_bias": dict(n=2, cin=3, h=6, w=5, cout=4, k=3, padding=1, bias=False),
    "depthwise_no_bias": dict(n=1, cin=5, h=5, w=6, cout=5, k=3, groups=5, bias=False),
    "pointwise": dict(n=3, cin=4, h=5, w=6, cout=7, k=1),
    "pointwise_stride2": dict(n=2, cin=4, h=5, w=6, cout=3, k=1, stride=2),
    "pointwise_padded": dict(n=2, cin=3, h=4, w=5, cout=2, k=1, padding=(1, 2)),
    "pointwise_padded_strided": dict(n=2, cin=3, h=6, w=7, cout=4, k=1, stride=(2, 3), padding=1),
    "kernel_fills_input": dict(n=2, cin=2, h=4, w=3, cout=3, k=(4, 3)),
    "single_row": dict(n=2, cin=2, h=1, w=8, cout=3, k=(1, 3), stride=(1, 2)),
    "batch_one_channel_one": dict(n=1, cin=1, h=5, w=5, cout=1, k=2, stride=3, padding=1),
}


def _conv_arrays(rng, case, dtype):
    groups = case.get("groups", 1)
    k = case["k"] if isinstance(case["k"], tuple) else (case["k"], case["k"])
    x = randn(rng, (case["n"], case["cin"], case["h"], case["w"]), dtype)
    w = randn(rng, (case["cout"], case["cin"] // groups, *k), dtype)
    b = randn(rng, (case["cout"],), dtype) if case.get("bias", True) else None
    return x, w, b


def _torch_conv_grads(x, w, b, dout, **kwargs):
    xt, wt = tt(x), tt(w)
    bt = None if b is None else tt(b)
    with warnings.catch_warnings():  # torch warns that even 'same' kernels pad a copy
        warnings.simplefilter("ignore", UserWarning)
        yt = TF.conv2d(xt, wt, bt, **kwargs)
    yt.backward(torch.tensor(dout))
    return yt, xt.grad, wt.grad, None if bt is None else bt.grad


def _compare_conv(x, w, b, ours_kwargs, dout_rng, dtype, torch_pad=None, torch_kwargs=None):
    """Run cnnkit and torch on the same conv; torch gets x padded by ``torch_pad`` if given."""
    out, cache = F.conv2d(x, w, b, **ours_kwargs)
    dout = randn(dout_rng, out.shape, dtype)
    dx, dw, db = F.conv2d_backward(dout, cache)
    torch_x = x if torch_pad is None else np.pad(x, ((0, 0), (0, 0), *torch_pad))
    yt, dxt, dwt, dbt = _torch_conv_grads(torch_x, w, b, dout, **(torch_kwargs or ours_kwargs))
    if torch_pad is not None:
        (top, bottom), (left, right) = torch_pad
        dxt = dxt[:, :, top : dxt.shape[2] - bottom, left : dxt.shape[3] - right]
    for name, ours, theirs in (("output", out, yt), ("dL/dx", dx, dxt), ("dL/dweight", dw, dwt)):
        check(ours, theirs, dtype, f"conv2d {name} ({cache.path})", _tolerance(cache, theirs))
    if b is None:
        assert db is None
    else:
        check(db, dbt, dtype, "conv2d dL/dbias")


def _tolerance(cache, theirs):
    """None (the dtype's tolerance), except float32 F(4x4, 3x3): atol 2e-5 of the largest value,
    its measured rounding (cnnkit/functional/winograd.py)."""
    if cache.path != "winograd4" or cache.weight.dtype != np.float32:
        return None
    return {"rtol": 1e-4, "atol": 2e-5 * max(1.0, float(theirs.detach().abs().max()))}


@pytest.fixture(params=conv_module.PATH_CHOICES)
def conv_path(request, monkeypatch):
    """Each CNNKIT_CONV_PATH in turn (a forced path runs every layer it can compute)."""
    monkeypatch.setenv(conv_module.PATH_VARIABLE, request.param)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv2d_matches_torch(name, dtype, rng, conv_path):
    case = CONV_CASES[name]
    x, w, b = _conv_arrays(rng, case, dtype)
    kwargs = dict(
        stride=case.get("stride", 1),
        padding=case.get("padding", 0),
        dilation=case.get("dilation", 1),
        groups=case.get("groups", 1),
    )
    _compare_conv(x, w, b, kwargs, rng, dtype)


def tf_same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same' rule, written out independently of cnnkit: output ceil(size/stride)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "h, w, k, stride, dilation",
    [
        (7, 8, 3, 2, 1),
        (8, 7, (2, 4), (2, 3), 1),
        (9, 6, 3, 3, (2, 1)),
        (5, 5, 4, 2, 1),
        (6, 9, (3, 1), (1, 2), 1),
    ],
)
def test_conv2d_same_padding_strided_matches_torch_with_explicit_pad(
    h, w, k, stride, dilation, dtype, rng
):
    k2 = k if isinstance(k, tuple) else (k, k)
    s2 = stride if isinstance(stride, tuple) else (stride, stride)
    d2 = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    x = randn(rng, (2, 3, h, w), dtype)
    wt = randn(rng, (4, 3, *k2), dtype)
    b = randn(rng, (4,), dtype)
    pad = tuple(tf_same_padding((h, w)[i], k2[i], s2[i], d2[i]) for i in range(2))
    ours = dict(stride=stride, padding="same", dilation=dilation)
    theirs = dict(stride=stride, padding=0, dilation=dilation)
    _compare_conv(x, wt, b, ours, rng, dtype, torch_pad=pad, torch_kwargs=theirs)
    out, _ = F.conv2d(x, wt, b, **ours)
    assert out.shape[2:] == (math.ceil(h / s2[0]), math.ceil(w / s2[1]))


@pytest.mark.parametrize("pad", [((0, 2), (1, 0)), ((2, 1), (0, 3)), ((1, 1), (2, 2))])
def test_conv2d_explicit_asymmetric_padding_matches_torch(pad, rng):
    x = randn(rng, (2, 2, 5, 6))
    w = randn(rng, (3, 2, 3, 2))
    b = randn(rng, (3,))
    ours, theirs = dict(stride=(2, 1), padding=pad), dict(stride=(2, 1))
    _compare_conv(x, w, b, ours, rng, np.float64, torch_pad=pad, torch_kwargs=theirs)


@pytest.mark.parametrize("groups, cout", [(1, 4), (2, 4), (4, 4), (4, 8)])
def test_conv2d_batch_tiling_matches_torch(groups, cout, rng, monkeypatch):
    """A tiny column budget forces the im2col path to run in many batch tiles."""
    monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", 1)
    x = randn(rng, (5, 4, 6, 5))
    w = randn(rng, (cout, 4 // groups, 3, 3))
    b = randn(rng, (cout,))
    _compare_conv(x, w, b, dict(stride=2, padding=1, groups=groups), rng, np.float64)


@pytest.mark.parametrize("block_bytes", [1, 2 * 5 * 9 * 8 * 8, 10**9])
def test_depthwise_cache_blocks_match_torch(block_bytes, rng, monkeypatch):
    """Blocks of one channel, of a few images, and of the whole batch give the same result."""
    monkeypatch.setattr(args_module, "CACHE_BLOCK_BYTES", block_bytes)
    x = randn(rng, (3, 5, 9, 8))
    w = randn(rng, (5, 1, 3, 3))
    b = randn(rng, (5,))
    _compare_conv(x, w, b, dict(stride=1, padding=1, groups=5), rng, np.float64)


@pytest.mark.parametrize("block_bytes", [1, 2 * 5 * 4 * 4 * 8, 10**9])
def test_max_pool_cache_blocks_match_torch(block_bytes, rng, monkeypatch):
    """Max-pool forward and backward are the same whatever the cache blocks."""
    monkeypatch.setattr(args_module, "CACHE_BLOCK_BYTES", block_bytes)
    x = randn(rng, (3, 5, 9, 8))
    out, cache = F.max_pool2d(x, 3, 2, 1)
    dout = randn(rng, out.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, 3, 2, 1)
    ty.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, ty.detach().numpy())
    np.testing.assert_allclose(F.max_pool2d_backward(dout, cache), tx.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("groups", [1, 3])
def test_conv2d_non_contiguous_input_matches_torch(groups, rng):
    base = randn(rng, (2, 3, 9, 14))
    x = base[:, :, ::-1, ::2]  # a strided, reversed view: no copy was made
    assert not x.flags.c_contiguous
    w = randn(rng, (3, 3 // groups, 3, 2))
    b = randn(rng, (3,))
    _compare_conv(x, w, b, dict(stride=(1, 2), groups=groups), rng, np.float64)


@pytest.mark.parametrize(
    "shape, wshape, stride, padding, dilation",
    [
        ((2, 3, 11, 7), (4, 3, 3, 3), 2, 1, 1),
        ((1, 2, 8, 9), (2, 2, 2, 3), (3, 2), (1, 0), (1, 2)),
        ((3, 1, 5, 4), (1, 1, 1, 1), 1, 0, 1),
        ((1, 4, 10, 10), (8, 2, 3, 3), 1, "same", 3),
        ((1, 4, 10, 9), (8, 2, 3, 3), 1, "valid", 2),
    ],
)
def test_conv2d_output_shape_matches_torch(shape, wshape, stride, padding, dilation):
    groups = shape[1] // wshape[1]
    expected = TF.conv2d(
        torch.zeros(shape), torch.zeros(wshape), None, stride, padding, dilation, groups
    ).shape
    assert F.conv2d_output_shape(shape, wshape, stride, padding, dilation) == tuple(expected)


# --------------------------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------------------------

POOL_CASES = [
    (2, None, 0),
    (3, 1, 1),  # overlapping windows with padding
    (3, 2, 1),
    (2, 1, 0),
    ((3, 2), (2, 1), (1, 0)),
    ((1, 3), (1, 2), (0, 1)),
    (4, 3, 2),
]


def _tie_input(rng, shape, dtype):
    """Integers from a tiny range: almost every window holds several equal maxima."""
    return rng.integers(-1, 2, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
def test_max_pool2d_matches_torch(kernel, stride, padding, ties, dtype, rng):
    shape = (2, 3, 7, 8)
    x = _tie_input(rng, shape, dtype) if ties else randn(rng, shape, dtype)
    out, cache = F.max_pool2d(x, kernel, stride, padding)
    dout = randn(rng, out.shape, dtype)
    dx = F.max_pool2d_backward(dout, cache)
    xt = tt(x)
    yt = TF.max_pool2d(xt, kernel, stride, padding)
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, "max_pool2d output")
    check(dx, xt.grad, dtype, "max_pool2d dL/dx")


def test_max_pool2d_routes_nan_and_minus_inf_like_torch(rng):
    x = randn(rng, (1, 2, 6, 6))
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = np.nan  # two NaNs in one window: torch keeps the last
    x[0, 1, :3, :3] = -np.inf  # windows of -inf only (some of them touching the padding)
    for kernel, stride, padding in [(2, 2, 0), (3, 1, 1), (3, 2, 1)]:
        out, cache = F.max_pool2d(x, kernel, stride, padding)
        dout = randn(rng, out.shape)
        dx = F.max_pool2d_backward(dout, cache)
        xt = tt(x)
        yt = TF.max_pool2d(xt, kernel, stride, padding)
        yt.backward(torch.tensor(dout))
        np.testing.assert_array_equal(out, yt.detach().numpy())
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
def test_avg_pool2d_matches_torch(kernel, stride, padding, count_include_pad, dtype, rng):
    x = randn(rng, (2, 3, 8, 7), dtype)
    out, cache = F.avg_pool2d(x, kernel, stride, padding, count_include_pad=count_include_pad)
    dout = randn(rng, out.shape, dtype)
    dx = F.avg_pool2d_backward(dout, cache)
    xt = tt(x)
    yt = TF.avg_pool2d(xt, kernel, stride, padding, count_include_pad=count_include_pad)
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, "avg_pool2d output")
    check(dx, xt.grad, dtype, "avg_pool2d dL/dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "hw, output_size",
    [((7, 5), (3, 2)), ((5, 7), (4, 3)), ((6, 6), 3), ((4, 5), 1), ((3, 4), (5, 6)), ((9, 2), 2)],
)
def test_adaptive_avg_pool2d_matches_torch(hw, output_size, dtype, rng):
    x = randn(rng, (2, 3, *hw), dtype)
    out, cache = F.adaptive_avg_pool2d(x, output_size)
    dout = randn(rng, out.shape, dtype)
    dx = F.adaptive_avg_pool2d_backward(dout, cache)
    xt = tt(x)
    yt = TF.adaptive_avg_pool2d(xt, output_size)
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, "adaptive_avg_pool2d output")
    check(dx, xt.grad, dtype, "adaptive_avg_pool2d dL/dx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool2d_matches_torch(dtype, rng):
    x = randn(rng, (3, 4, 5, 7), dtype)
    out, cache = F.global_avg_pool2d(x)
    dout = randn(rng, out.shape, dtype)
    dx = F.global_avg_pool2d_backward(dout, cache)
    xt = tt(x)
    yt = TF.adaptive_avg_pool2d(xt, 1).flatten(1)
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, "global_avg_pool2d output")
    check(dx, xt.grad, dtype, "global_avg_pool2d dL/dx")


# --------------------------------------------------------------------------------------------
# linear, flatten, activations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(bias, dtype, rng):
    x, w = randn(rng, (5, 7), dtype), randn(rng, (3, 7), dtype)
    b = randn(rng, (3,), dtype) if bias else None
    out, cache = F.linear(x, w, b)
    dout = randn(rng, out.shape, dtype)
    dx, dw, db = F.linear_backward(dout, cache)
    xt, wt = tt(x), tt(w)
    bt = tt(b) if bias else None
    yt = TF.linear(xt, wt, bt)
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, "linear output")
    check(dx, xt.grad, dtype, "linear dL/dx")
    check(dw, wt.grad, dtype, "linear dL/dweight")
    if bias:
        check(db, bt.grad, dtype, "linear dL/dbias")
    else:
        assert db is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("start_dim", [1, 2])
def test_flatten_matches_torch(start_dim, dtype, rng):
    x = randn(rng, (2, 3, 4, 5), dtype)
    out, cache = F.flatten(x, start_dim)
    dout = randn(rng, out.shape, dtype)
    dx = F.flatten_backward(dout, cache)
    xt = tt(x)
    yt = torch.flatten(xt, start_dim)
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, "flatten output")
    check(dx, xt.grad, dtype, "flatten dL/dx")


def _activation_input(rng, dtype):
    x = randn(rng, (4, 6, 3), dtype) * 3
    x[0, :3, 0] = 0.0  # the kink of relu / leaky relu: torch's derivative convention at 0
    return x


ACTIVATIONS = {
    "relu": (F.relu, F.relu_backward, TF.relu),
    "leaky_relu_default": (F.leaky_relu, F.leaky_relu_backward, TF.leaky_relu),
    "leaky_relu_0.2": (
        lambda x: F.leaky_relu(x, 0.2),
        F.leaky_relu_backward,
        lambda x: TF.leaky_relu(x, 0.2),
    ),
    "sigmoid": (F.sigmoid, F.sigmoid_backward, torch.sigmoid),
    "tanh": (F.tanh, F.tanh_backward, torch.tanh),
    "softmax_last": (F.softmax, F.softmax_backward, lambda x: torch.softmax(x, -1)),
    "softmax_axis1": (
        lambda x: F.softmax(x, axis=1),
        lambda d, c: F.softmax_backward(d, c, axis=1),
        lambda x: torch.softmax(x, 1),
    ),
    "log_softmax_last": (F.log_softmax, F.log_softmax_backward, lambda x: TF.log_softmax(x, -1)),
    "log_softmax_axis0": (
        lambda x: F.log_softmax(x, axis=0),
        lambda d, c: F.log_softmax_backward(d, c, axis=0),
        lambda x: TF.log_softmax(x, 0),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_matches_torch(name, dtype, rng):
    forward, backward, reference = ACTIVATIONS[name]
    x = _activation_input(rng, dtype)
    out, cache = forward(x)
    dout = randn(rng, out.shape, dtype)
    dx = backward(dout, cache)
    xt = tt(x)
    yt = reference(xt)
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, f"{name} output")
    check(dx, xt.grad, dtype, f"{name} dL/dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softmax_last", "log_softmax_last"])
def test_activation_large_inputs_stay_finite_and_match_torch(name, dtype, rng):
    forward, backward, reference = ACTIVATIONS[name]
    x = np.array([[-1e4, -800.0, -90.0, -30.0, 0.0, 30.0, 90.0, 800.0, 1e4]], dtype=dtype)
    dout = randn(rng, x.shape, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value RuntimeWarning
        out, cache = forward(x)
        dx = backward(dout, cache)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))
    xt = tt(x)
    yt = reference(xt)
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, f"{name} output")
    check(dx, xt.grad, dtype, f"{name} dL/dx")


# --------------------------------------------------------------------------------------------
# batch norm
# --------------------------------------------------------------------------------------------

BN_SHAPES = [(6, 4), (5, 3, 7), (4, 3, 5, 6)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("momentum", [0.1, 0.35])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=["2d", "3d", "4d"])
def test_batch_norm_train_matches_torch(shape, momentum, affine, dtype, rng):
    c = shape[1]
    x = randn(rng, shape, dtype) * 2 + 0.5
    gamma = randn(rng, (c,), dtype) if affine else None
    beta = randn(rng, (c,), dtype) if affine else None
    running_mean = randn(rng, (c,), dtype)
    running_var = rng.uniform(0.5, 2.0, c).astype(dtype)
    rm_t, rv_t = torch.tensor(running_mean), torch.tensor(running_var)
    out, cache = F.batch_norm(
        x, running_mean, running_var, gamma, beta, training=True, momentum=momentum, eps=1e-3
    )
    dout = randn(rng, out.shape, dtype)
    dx, dgamma, dbeta = F.batch_norm_backward(dout, cache)
    xt = tt(x)
    gt = tt(gamma) if affine else None
    bt = tt(beta) if affine else None
    yt = TF.batch_norm(xt, rm_t, rv_t, gt, bt, training=True, momentum=momentum, eps=1e-3)
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, "batch_norm output")
    check(dx, xt.grad, dtype, "batch_norm dL/dx")
    check(running_mean, rm_t, dtype, "running_mean after the update")
    check(running_var, rv_t, dtype, "running_var after the update")
    if affine:
        check(dgamma, gt.grad, dtype, "batch_norm dL/dgamma")
        check(dbeta, bt.grad, dtype, "batch_norm dL/dbeta")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES, ids=["2d", "3d", "4d"])
def test_batch_norm_eval_matches_torch(shape, dtype, rng):
    c = shape[1]
    x = randn(rng, shape, dtype)
    gamma, beta = randn(rng, (c,), dtype), randn(rng, (c,), dtype)
    running_mean = randn(rng, (c,), dtype)
    running_var = rng.uniform(0.5, 2.0, c).astype(dtype)
    before = running_mean.copy(), running_var.copy()
    out, cache = F.batch_norm(x, running_mean, running_var, gamma, beta, training=False)
    dout = randn(rng, out.shape, dtype)
    dx, dgamma, dbeta = F.batch_norm_backward(dout, cache)
    xt, gt, bt = tt(x), tt(gamma), tt(beta)
    yt = TF.batch_norm(
        xt, torch.tensor(running_mean), torch.tensor(running_var), gt, bt, training=False
    )
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, "batch_norm eval output")
    check(dx, xt.grad, dtype, "batch_norm eval dL/dx")
    check(dgamma, gt.grad, dtype, "batch_norm eval dL/dgamma")
    check(dbeta, bt.grad, dtype, "batch_norm eval dL/dbeta")
    np.testing.assert_array_equal(running_mean, before[0])  # eval never updates the statistics
    np.testing.assert_array_equal(running_var, before[1])


def test_batch_norm_without_running_stats_matches_torch(rng):
    x = randn(rng, (4, 3, 5, 5))
    out, cache = F.batch_norm(x, None, None, training=True)
    dout = randn(rng, out.shape)
    dx, _, _ = F.batch_norm_backward(dout, cache)
    xt = tt(x)
    yt = TF.batch_norm(xt, None, None, training=True)
    yt.backward(torch.tensor(dout))
    check(out, yt, np.float64, "batch_norm output")
    check(dx, xt.grad, np.float64, "batch_norm dL/dx")


# --------------------------------------------------------------------------------------------
# dropout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_is_inverted_and_matches_torch_given_the_mask(p, dtype, rng):
    x = rng.uniform(0.5, 1.5, (50, 40, 10)).astype(dtype)
    out, scale = F.dropout(x, p, np.random.default_rng(7))
    dout = randn(rng, out.shape, dtype)
    dx = F.dropout_backward(dout, scale)
    kept = out != 0
    # torch's dropout draws its own mask: compare with torch's formula on our mask
    mask_t = torch.tensor(kept.astype(dtype))
    xt = tt(x)
    yt = xt * mask_t / (1 - p)
    yt.backward(torch.tensor(dout))
    check(out, yt, dtype, "dropout output")
    check(dx, xt.grad, dtype, "dropout dL/dx")
    # kept entries scaled by exactly 1 / (1 - p); keep rate 1 - p to within 5 sigma
    np.testing.assert_allclose(out[kept], x[kept] / dtype(1 - p), rtol=1e-6)
    sigma = math.sqrt(p * (1 - p) / x.size)
    assert abs(kept.mean() - (1 - p)) < 5 * sigma
    # torch's own dropout has the same expectation
    torch_kept = (TF.dropout(torch.tensor(x), p, training=True) != 0).double().mean().item()
    assert abs(kept.mean() - torch_kept) < 10 * sigma


def test_dropout_is_deterministic_given_a_generator(rng):
    x = randn(rng, (8, 9))
    a, _ = F.dropout(x, 0.5, np.random.default_rng(123))
    b, _ = F.dropout(x, 0.5, np.random.default_rng(123))
    c, _ = F.dropout(x, 0.5, np.random.default_rng(124))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_eval_p0_and_p1(dtype, rng):
    x = randn(rng, (6, 7), dtype)
    dout = randn(rng, x.shape, dtype)
    generator = np.random.default_rng(0)
    for p in (0.0, 0.3, 1.0):
        out, scale = F.dropout(x, p, generator, training=False)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(F.dropout_backward(dout, scale), dout)
    out, scale = F.dropout(x, 0.0, generator)
    check(out, TF.dropout(torch.tensor(x), 0.0, training=True), dtype, "dropout p=0")
    np.testing.assert_array_equal(F.dropout_backward(dout, scale), dout)
    out, scale = F.dropout(x, 1.0, generator)
    check(out, TF.dropout(torch.tensor(x), 1.0, training=True), dtype, "dropout p=1")
    check(F.dropout_backward(dout, scale), np.zeros_like(dout), dtype, "dropout p=1 grad")


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------


def _torch_ce(logits, target, reduction, smoothing, dloss=1.0):
    zt = tt(logits)
    target_t = torch.tensor(target)
    loss = TF.cross_entropy(zt, target_t, reduction=reduction, label_smoothing=smoothing)
    (loss * dloss).backward()
    return loss.item(), zt.grad.numpy()


def _ce_targets(rng, kind, n, k, dtype):
    labels = rng.integers(0, k, n)
    if kind == "labels":
        return labels
    if kind == "onehot":
        return np.eye(k, dtype=dtype)[labels]
    return rng.dirichlet(np.ones(k), n).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", ["labels", "onehot", "probabilities"])
def test_cross_entropy_matches_torch(kind, reduction, smoothing, dtype, rng):
    logits = randn(rng, (7, 5), dtype) * 3
    target = _ce_targets(rng, kind, 7, 5, dtype)
    loss, cache = F.cross_entropy(logits, target, reduction, smoothing)
    grad = F.cross_entropy_backward(cache, 0.7)
    loss_t, grad_t = _torch_ce(logits, target, reduction, smoothing, dloss=0.7)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, loss_t, **TOL[np.dtype(dtype)])
    check(grad, grad_t, dtype, "cross_entropy dL/dlogits")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_cross_entropy_huge_logits_stay_finite_and_match_torch(kind, dtype, rng):
    logits = np.array(
        [[1e4, -1e4, 0.0, 3.0], [-1e4, 1e4, 1e4, -5.0], [-1e4, -1e4, -1e4, -1e4]], dtype=dtype
    )
    target = _ce_targets(rng, kind, 3, 4, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, cache = F.cross_entropy(logits, target, "mean", 0.1)
        grad = F.cross_entropy_backward(cache)
    loss_t, grad_t = _torch_ce(logits, target, "mean", 0.1)
    assert math.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, loss_t, **TOL[np.dtype(dtype)])
    check(grad, grad_t, dtype, "cross_entropy dL/dlogits")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_loss_matches_torch(reduction, dtype, rng):
    prediction, target = randn(rng, (4, 3, 2), dtype), randn(rng, (4, 3, 2), dtype)
    loss, cache = F.mse_loss(prediction, target, reduction)
    grad = F.mse_loss_backward(cache, 1.5)
    pt = tt(prediction)
    loss_t = TF.mse_loss(pt, torch.tensor(target), reduction=reduction)
    (loss_t * 1.5).backward()
    np.testing.assert_allclose(loss, loss_t.item(), **TOL[np.dtype(dtype)])
    check(grad, pt.grad, dtype, "mse_loss dL/dprediction")


# --------------------------------------------------------------------------------------------
# float32 stays float32: every op, forward and backward
# --------------------------------------------------------------------------------------------


def _dtype_cases(dtype, rng):
    x4 = randn(rng, (2, 4, 6, 5), dtype)
    w = randn(rng, (4, 2, 3, 3), dtype)
    b = randn(rng, (4,), dtype)
    dw_depth = randn(rng, (4, 1, 3, 3), dtype)
    x2 = randn(rng, (3, 4), dtype)
    gamma, beta = randn(rng, (4,), dtype), randn(rng, (4,), dtype)
    rm, rv = np.zeros(4, dtype), np.ones(4, dtype)
    labels = np.array([0, 3, 1])
    return {
        "conv2d": (lambda: F.conv2d(x4, w, b, 2, "same", 1, 2), F.conv2d_backward),
        "conv2d_depthwise": (lambda: F.conv2d(x4, dw_depth, b, 1, 1, 1, 4), F.conv2d_backward),
        "max_pool2d": (lambda: F.max_pool2d(x4, 3, 2, 1), F.max_pool2d_backward),
        "avg_pool2d": (
            lambda: F.avg_pool2d(x4, 3, 2, 1, count_include_pad=False),
            F.avg_pool2d_backward,
        ),
        "adaptive_avg_pool2d": (
            lambda: F.adaptive_avg_pool2d(x4, (4, 3)),
            F.adaptive_avg_pool2d_backward,
        ),
        "global_avg_pool2d": (lambda: F.global_avg_pool2d(x4), F.global_avg_pool2d_backward),
        "linear": (lambda: F.linear(x2, randn(rng, (5, 4), dtype), None), F.linear_backward),
        "flatten": (lambda: F.flatten(x4), F.flatten_backward),
        "relu": (lambda: F.relu(x4), F.relu_backward),
        "leaky_relu": (lambda: F.leaky_relu(x4, 0.3), F.leaky_relu_backward),
        "sigmoid": (lambda: F.sigmoid(x4), F.sigmoid_backward),
        "tanh": (lambda: F.tanh(x4), F.tanh_backward),
        "softmax": (lambda: F.softmax(x2), F.softmax_backward),
        "log_softmax": (lambda: F.log_softmax(x2), F.log_softmax_backward),
        "batch_norm_train": (
            lambda: F.batch_norm(x4, rm, rv, gamma, beta, True),
            F.batch_norm_backward,
        ),
        "batch_norm_eval": (
            lambda: F.batch_norm(x4, rm, rv, gamma, beta, False),
            F.batch_norm_backward,
        ),
        "dropout": (lambda: F.dropout(x4, 0.5, np.random.default_rng(0)), F.dropout_backward),
        "cross_entropy": (
            lambda: F.cross_entropy(x2, labels, label_smoothing=0.1),
            lambda d, c: F.cross_entropy_backward(c),
        ),
        "cross_entropy_onehot": (
            lambda: F.cross_entropy(x2, np.eye(4, dtype=dtype)[labels]),
            lambda d, c: F.cross_entropy_backward(c),
        ),
        "mse_loss": (
            lambda: F.mse_loss(x2, np.zeros_like(x2)),
            lambda d, c: F.mse_loss_backward(c),
        ),
    }


DTYPE_OPS = list(_dtype_cases(np.float32, np.random.default_rng(0)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", DTYPE_OPS)
def test_op_keeps_dtype(op, dtype, rng):
    forward, backward = _dtype_cases(dtype, rng)[op]
    out, cache = forward()
    if isinstance(out, float):  # a loss: the gradient carries the dtype
        dout = None
    else:
        assert out.dtype == np.dtype(dtype), f"{op} returned {out.dtype} for {dtype} input"
        dout = np.ones_like(out)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for g in grads:
        if g is not None:
            assert g.dtype == np.dtype(dtype), f"{op} gradient is {g.dtype} for {dtype} input"


# --------------------------------------------------------------------------------------------
# numerical gradient checks of every op (float64)
# --------------------------------------------------------------------------------------------


def _gradcheck_cases(rng):
    def r(*shape):
        return rng.standard_normal(shape)

    rm, rv = r(3), rng.uniform(0.5, 2, 3)
    soft = rng.dirichlet(np.ones(4), 5)
    labels = rng.integers(0, 4, 5)

    def loss_op(fn, fn_backward, *args):
        """A loss as an op: the float loss as a 0-d array; backward scales by the upstream grad."""

        def forward(z):
            loss, cache = fn(z, *args)
            return np.array(loss), cache

        return forward, lambda d, cache: fn_backward(cache, float(d))

    return {
        "conv2d": (
            (lambda x, w, b: F.conv2d(x, w, b, 2, 1)),
            F.conv2d_backward,
            (r(2, 3, 6, 5), r(4, 3, 3, 2), r(4)),
        ),
        "conv2d_grouped_dilated_same": (
            (lambda x, w, b: F.conv2d(x, w, b, (1, 2), "same", 2, 2)),
            F.conv2d_backward,
            (r(2, 4, 7, 6), r(6, 2, 2, 3), r(6)),
        ),
        "conv2d_depthwise": (
            (lambda x, w: F.conv2d(x, w, None, 2, 1, 1, 3)),
            lambda d, c: F.conv2d_backward(d, c)[:2],
            (r(2, 3, 7, 6), r(3, 1, 3, 3)),
        ),
        "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1), F.max_pool2d_backward, (r(2, 2, 7, 6),)),
        "avg_pool2d": (
            lambda x: F.avg_pool2d(x, (3, 2), 2, 1, count_include_pad=False),
            F.avg_pool2d_backward,
            (r(2, 2, 7, 6),),
        ),
        "adaptive_avg_pool2d": (
            lambda x: F.adaptive_avg_pool2d(x, (3, 4)),
            F.adaptive_avg_pool2d_backward,
            (r(2, 2, 7, 6),),
        ),
        "global_avg_pool2d": (F.global_avg_pool2d, F.global_avg_pool2d_backward, (r(2, 3, 4, 5),)),
        "linear": (F.linear, F.linear_backward, (r(4, 5), r(3, 5), r(3))),
        "flatten": (F.flatten, F.flatten_backward, (r(2, 3, 2, 2),)),
        "relu": (F.relu, F.relu_backward, (r(3, 7),)),
        "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), F.leaky_relu_backward, (r(3, 7),)),
        "sigmoid": (F.sigmoid, F.sigmoid_backward, (3 * r(3, 7),)),
        "tanh": (F.tanh, F.tanh_backward, (r(3, 7),)),
        "softmax": (F.softmax, F.softmax_backward, (r(3, 7),)),
        "log_softmax": (
            lambda x: F.log_softmax(x, axis=1),
            lambda d, c: F.log_softmax_backward(d, c, axis=1),
            (r(3, 4, 2),),
        ),
        "batch_norm_train": (
            lambda x, g, b: F.batch_norm(x, None, None, g, b, True),
            F.batch_norm_backward,
            (r(4, 3, 3, 2), r(3), r(3)),
        ),
        "batch_norm_eval": (
            lambda x, g, b: F.batch_norm(x, rm, rv, g, b, False),
            F.batch_norm_backward,
            (r(4, 3), r(3), r(3)),
        ),
        "dropout": (
            lambda x: F.dropout(x, 0.4, np.random.default_rng(5)),
            F.dropout_backward,
            (r(4, 6),),
        ),
        "cross_entropy_labels": (
            *loss_op(F.cross_entropy, F.cross_entropy_backward, labels, "mean", 0.1),
            (r(5, 4),),
        ),
        "cross_entropy_soft_sum": (
            *loss_op(F.cross_entropy, F.cross_entropy_backward, soft, "sum"),
            (r(5, 4),),
        ),
        "mse_loss": (*loss_op(F.mse_loss, F.mse_loss_backward, r(3, 4)), (r(3, 4),)),
    }


GRADCHECK_OPS = list(_gradcheck_cases(np.random.default_rng(0)))


@pytest.mark.parametrize("op", GRADCHECK_OPS)
def test_gradcheck_op(op, rng):
    forward, backward, inputs = _gradcheck_cases(rng)[op]
    report = gradcheck((forward, backward), *inputs, max_per_array=60)
    assert report.checked > 0
    assert report.passed, str(report)


def test_gradcheck_detects_a_wrong_functional_backward(rng):
    x = rng.standard_normal((3, 5))
    wrong = gradcheck((F.tanh, lambda d, y: d * (1 - y)), x)  # forgot to square y
    assert not wrong.passed
    assert "FAILED" in str(wrong)
    assert gradcheck((F.tanh, F.tanh_backward), x).passed
