"""Layers run together give what they give one by one, bit for bit (cnnkit.nn.fusion).

Under no_grad an eval-mode batch norm after a convolution (and a ReLU after it) is applied to
the convolution's output in place, and a ReLU, ReLU6 or Hardtanh right after a convolution is
its clamp. The fused chains are checked against the same layers run with gradients on (where
nothing fuses), the in-place pass against batch_norm + relu, the clamp over every convolution
path against the activation after it, and the cases that must not fuse (training, batch
statistics, a wrapped layer) against the rule.
"""

from __future__ import annotations

import os
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit as ck
import cnnkit.functional as F
from cnnkit.functional import _compiled
from cnnkit.functional.conv import PATH_CHOICES
from cnnkit.functional.norm import batch_norm_inference_
from cnnkit.nn import fusion
from cnnkit.viz.analysis import tap


def with_random_statistics(model: ck.nn.Module, rng) -> ck.nn.Module:
    """``model`` in eval mode with random running statistics and affine parameters."""
    for module in model.modules():
        if isinstance(module, ck.nn.BatchNorm2d):
            c = module.num_features
            module.running_mean[...] = rng.standard_normal(c)
            module.running_var[...] = rng.random(c) + 0.5
            module.weight.data[...] = rng.standard_normal(c)
            module.bias.data[...] = rng.standard_normal(c)
    return model.eval()


def fused_calls(monkeypatch) -> list[bool]:
    """The ``relu`` flag of every fused convolution + batch norm from now on."""
    calls: list[bool] = []
    real = fusion._convolve_and_normalize

    def spy(module, bn, relu=None, *, x):
        calls.append(relu is not None)
        return real(module, bn, relu, x=x)

    monkeypatch.setattr(fusion, "_convolve_and_normalize", spy)
    return calls


@pytest.mark.parametrize(
    ("name", "shape", "fused", "with_relu"),
    [("mini_xception", (3, 1, 28, 28), 13, 6), ("resnet20", (2, 3, 32, 32), 21, 10)],
)
def test_a_zoo_model_under_no_grad_fuses_and_gives_the_unfused_logits_bit_for_bit(
    monkeypatch, rng, name, shape, fused, with_relu
):
    # the same convolution kernels in both runs: inference takes Winograd more widely
    monkeypatch.setenv("CNNKIT_CONV_PATH", "grid")
    model = with_random_statistics(ck.models.get(name, num_classes=10), rng)
    x = rng.standard_normal(shape).astype(np.float32)
    unfused = model(x)  # gradients on: every layer runs on its own
    calls = fused_calls(monkeypatch)
    with ck.no_grad():
        out = model(x)
    assert (len(calls), sum(calls)) == (fused, with_relu)
    np.testing.assert_array_equal(out, unfused)


def chain(rng, dtype=np.float32) -> ck.nn.Sequential:
    model = ck.nn.Sequential(
        ck.nn.Conv2d(3, 4, 3, padding=1, dtype=dtype, rng=rng),
        ck.nn.BatchNorm2d(4, dtype=dtype),
        ck.nn.ReLU(),
        ck.nn.SeparableConv2d(4, 5, 3, padding=1, dtype=dtype, rng=rng),
        ck.nn.BatchNorm2d(5, dtype=dtype),
    )
    return with_random_statistics(model, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_sequential_chain_fuses_both_convolutions(monkeypatch, rng, dtype):
    model = chain(rng, dtype)
    x = rng.standard_normal((2, 3, 6, 7)).astype(dtype)
    x[0, 0, 0, 0] = np.nan  # a NaN goes through both ways alike
    unfused = model(x)
    calls = fused_calls(monkeypatch)
    with ck.no_grad():
        out = model(x)
    assert calls == [True, False]
    np.testing.assert_array_equal(out, unfused)


@pytest.mark.parametrize(
    "case", ["training", "batch statistics", "tapped batch norm", "tapped conv"]
)
def test_what_must_not_fuse_runs_layer_by_layer(monkeypatch, rng, case):
    model = chain(rng)
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    if case == "training":
        model.train()
    if case == "batch statistics":
        model[1].track_running_stats = False
    calls = fused_calls(monkeypatch)
    watched = {"tapped batch norm": model[1], "tapped conv": model[0]}.get(case)
    with ck.no_grad(), tap(watched) as record:
        out = model(x)
    assert calls == ([] if case == "training" else [False])  # the separable conv fuses
    if watched is not None:
        assert record["output"].shape == (2, 4, 6, 7)
        expected = model[1](model[0](x)) if watched is model[1] else model[0](x)
        np.testing.assert_array_equal(record["output"], expected)
    assert out.shape == (2, 5, 6, 7)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from([(3, 4), (2, 3, 5), (2, 3, 4, 5), (1, 1, 1, 1)]),
    relu=st.booleans(),
    affine=st.booleans(),
    compiled=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_batch_norm_in_place_equals_batch_norm_then_relu(
    shape, relu, affine, compiled, dtype, seed
):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0] = np.nan
    mean, var = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.1).astype(dtype)
    gamma = rng.standard_normal(c).astype(dtype) if affine else None
    beta = rng.standard_normal(c).astype(dtype) if affine else None
    expected, _ = F.batch_norm(x, mean, var, gamma, beta, training=False, eps=1e-3)
    if relu:
        expected, _ = F.relu(expected)
    previous, _compiled.ENABLED = _compiled.ENABLED, compiled and _compiled.ENABLED
    try:
        written = x.copy()
        out = batch_norm_inference_(written, mean, var, gamma, beta, 1e-3, relu=relu)
    finally:
        _compiled.ENABLED = previous
    assert out is written
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------------------------------------
# an activation fused into the convolution before it (conv2d's clamp)
# ---------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (lambda z: F.relu(z)[0], (0.0, float("inf"))),
    "relu6": (lambda z: F.relu6(z)[0], (0.0, 6.0)),
    "hardtanh": (lambda z: F.hardtanh(z, -0.5, 0.75)[0], (-0.5, 0.75)),
}


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal bit patterns: the sign of a zero and a NaN's payload included."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    unsigned = np.uint32 if actual.dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(actual.view(unsigned), expected.view(unsigned))


@settings(max_examples=120, deadline=None)
@given(
    n=st.integers(1, 3),
    groups=st.sampled_from(["one", "two", "depthwise"]),
    kernel=st.sampled_from([1, 2, 3]),
    stride=st.integers(1, 2),
    size=st.tuples(st.integers(3, 9), st.integers(3, 9)),
    bias=st.booleans(),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
    path=st.sampled_from(PATH_CHOICES),
    compiled=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_conv2d_clamp_is_the_activation_after_it_bit_for_bit(
    n, groups, kernel, stride, size, bias, activation, path, compiled, dtype, seed
):
    rng = np.random.default_rng(seed)
    c_in, c_out, g = {"one": (3, 4, 1), "two": (4, 6, 2), "depthwise": (5, 5, 5)}[groups]
    x = rng.standard_normal((n, c_in, *size)).astype(dtype)
    x[0, 0, 0, 0] = np.nan
    x[-1, -1] = -0.0  # an all-zero plane: signed zeros reach the clamp
    weight = rng.standard_normal((c_out, c_in // g, kernel, kernel)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype) if bias else None
    function, clamp = ACTIVATIONS[activation]
    previous, _compiled.ENABLED = _compiled.ENABLED, compiled and _compiled.ENABLED
    try:
        with patch.dict(os.environ, {"CNNKIT_CONV_PATH": path}), ck.no_grad():
            plain, _ = F.conv2d(x, weight, b, stride, 1, 1, g)
            expected = function(plain)
            fused, _ = F.conv2d(x, weight, b, stride, 1, 1, g, clamp=clamp)
    finally:
        _compiled.ENABLED = previous
    assert_same_bits(fused, expected)


@pytest.mark.parametrize(
    ("clamp", "error", "message"),
    [
        ((0.0,), TypeError, r"clamp must be a pair of numbers \(low, high\), got \(0.0,\)"),
        (("0", 6), TypeError, "clamp must be a pair of numbers"),
        ((True, 6.0), TypeError, "clamp must be a pair of numbers"),
        ((6.0, 0.0), ValueError, r"clamp must have low <= high, got \(6.0, 0.0\)"),
        ((float("nan"), 1.0), ValueError, "clamp must have low <= high"),
    ],
)
def test_conv2d_clamp_refuses_what_is_not_two_ordered_numbers(clamp, error, message):
    x, weight = np.zeros((1, 2, 4, 4), np.float32), np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(error, match=message):
        F.conv2d(x, weight, clamp=clamp)


def clamped_calls(monkeypatch) -> list[str]:
    """The activation layer's class name of every convolution run with a clamp from now on."""
    calls: list[str] = []
    real = fusion.convolve_and_clamp

    def spy(module, activation, x):
        calls.append(type(activation).__name__)
        return real(module, activation, x)

    monkeypatch.setattr(fusion, "convolve_and_clamp", spy)
    return calls


def test_a_sequential_runs_each_activation_as_its_convolutions_clamp(monkeypatch, rng):
    model = ck.nn.Sequential(
        ck.nn.Conv2d(3, 4, 3, padding=1, rng=rng),
        ck.nn.ReLU6(),
        ck.nn.Conv2d(4, 4, 1, rng=rng),
        ck.nn.Hardtanh(-0.2, 0.3),
        ck.nn.Conv2d(4, 4, 3, groups=4, rng=rng),
        ck.nn.ReLU(),
        ck.nn.Conv2d(4, 2, 1, rng=rng),
        ck.nn.Sigmoid(),  # not a clamp
    )
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    unfused = model(x)
    calls = clamped_calls(monkeypatch)
    with ck.no_grad():
        out = model(x)
    assert calls == ["ReLU6", "Hardtanh", "ReLU"]
    assert_same_bits(out, unfused)
    conv1d = ck.nn.Sequential(ck.nn.Conv1d(2, 3, 3, rng=rng), ck.nn.ReLU())
    signal = rng.standard_normal((2, 2, 9)).astype(np.float32)
    expected = conv1d(signal)
    with ck.no_grad():
        assert_same_bits(conv1d(signal), expected)
    assert calls[-1] == "ReLU"


@pytest.mark.parametrize("case", ["gradients on", "tapped conv", "tapped activation"])
def test_an_activation_that_must_stay_a_layer_is_not_a_clamp(monkeypatch, rng, case):
    model = ck.nn.Sequential(ck.nn.Conv2d(3, 4, 3, rng=rng), ck.nn.ReLU6())
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    calls = clamped_calls(monkeypatch)
    watched = {"tapped conv": model[0], "tapped activation": model[1]}.get(case)
    if case == "gradients on":
        out = model(x)
        assert model.backward(np.ones_like(out)).shape == x.shape
    else:
        with ck.no_grad(), tap(watched) as record:
            out = model(x)
        assert record["output"].shape == (2, 4, 4, 5)
    assert calls == []
    assert out.min() >= 0 and out.max() <= 6
