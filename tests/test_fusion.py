"""Layers run together give what they give one by one, bit for bit (cnnkit.nn.fusion).

Under no_grad an eval-mode batch norm after a convolution (and a ReLU after it) is applied to
the convolution's output in place; here the fused chains are checked against the same layers
run with gradients on (where nothing fuses), the in-place pass against batch_norm + relu, and
the cases that must not fuse (training, batch statistics, a wrapped layer) against the rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit as ck
import cnnkit.functional as F
from cnnkit.functional import _compiled
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
