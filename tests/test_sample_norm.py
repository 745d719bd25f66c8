"""GroupNorm, LayerNorm and InstanceNorm1d/2d against torch: hypothesis over shapes and options
(float64 to 1e-10, float32 to rtol 1e-4), running statistics, gradchecks, every message."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit as ck
from cnnkit import nn

torch = pytest.importorskip("torch")


@st.composite
def configs(draw):
    kind = draw(st.sampled_from(["GroupNorm", "LayerNorm", "InstanceNorm1d", "InstanceNorm2d"]))
    batch = draw(st.integers(1, 3))
    affine, bias = draw(st.booleans()), draw(st.booleans())
    if kind == "GroupNorm":
        groups = draw(st.integers(1, 3))
        channels = groups * draw(st.integers(1, 3))
        spatial = draw(st.lists(st.integers(2, 4), min_size=2, max_size=2))  # 4+ values a group
        shape = (batch, channels, *spatial)
        return kind, shape, (groups, channels), {"affine": affine, "bias": bias}
    if kind == "LayerNorm":
        shape = (batch, *draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
        normalized = shape[len(shape) - draw(st.integers(1, len(shape) - 1)) :]
        return kind, shape, (normalized,), {"elementwise_affine": affine, "bias": bias}
    channels = draw(st.integers(1, 3))
    spatial = [draw(st.integers(2, 4)) for _ in range(1 if kind == "InstanceNorm1d" else 2)]
    shape = (batch, channels, *spatial)
    if draw(st.booleans()):
        shape = shape[1:]  # unbatched
    options = {"affine": affine, "bias": bias, "track_running_stats": draw(st.booleans())}
    return kind, shape, (channels,), options


def _run(kind, shape, args, options, dtype, seed, rtol, atol):
    rng = np.random.default_rng(seed)
    ours = getattr(nn, kind)(*args, dtype=dtype, **options)
    theirs = getattr(torch.nn, kind)(*args, **options)
    theirs = theirs.double() if dtype == np.float64 else theirs
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.uniform_(0.5, 1.5)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for training in (True, True, False):
        ours.train(training)
        theirs.train(training)
        x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        reference = theirs(tx)
        upstream = rng.standard_normal(shape).astype(dtype)
        grads = torch.autograd.grad(reference, [tx, *theirs.parameters()], torch.tensor(upstream))
        ours.zero_grad()
        np.testing.assert_allclose(ours(x), reference.detach().numpy(), rtol=rtol, atol=atol)
        np.testing.assert_allclose(ours.backward(upstream), grads[0].numpy(), rtol=rtol, atol=atol)
        for (name, parameter), grad in zip(ours.named_parameters(), grads[1:], strict=True):
            np.testing.assert_allclose(
                parameter.grad, grad.numpy(), rtol=rtol, atol=atol, err_msg=name
            )
        for name, buffer in theirs.named_buffers():
            np.testing.assert_allclose(
                ours.state_dict()[name], buffer.numpy(), rtol=rtol, err_msg=name
            )


@settings(max_examples=40, deadline=None)
@given(config=configs(), seed=st.integers(0, 2**31))
def test_sample_norm_equals_torch_in_float64(config, seed):
    _run(*config, np.float64, seed, 1e-9, 1e-11)


@settings(max_examples=25, deadline=None)
@given(config=configs(), seed=st.integers(0, 2**31))
def test_sample_norm_equals_torch_in_float32(config, seed):
    # a group of nearly equal values (var near eps) loses float32 digits in x - mean, in torch
    # as here: absolute 1e-3 on outputs of order 1
    _run(*config, np.float32, seed, 1e-4, 1e-3)


@pytest.mark.parametrize(
    "layer",
    [
        lambda: nn.GroupNorm(2, 4, dtype=np.float64),
        lambda: nn.LayerNorm((3, 3), dtype=np.float64),
        lambda: nn.InstanceNorm2d(4, affine=True, dtype=np.float64),
    ],
)
def test_sample_norm_gradcheck(layer):
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3))
    module = layer()
    for parameter in module.parameters():
        parameter.data[...] = np.random.default_rng(1).uniform(0.5, 1.5, parameter.shape)
    report = ck.gradcheck(module, x, tolerance=1e-4)  # standardising 9 values: 1e-5 noise
    assert report.passed, report


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: nn.GroupNorm(3, 4),
            ValueError,
            "num_channels=4 must be divisible by num_groups=3",
        ),
        (lambda: nn.GroupNorm(2, 4, eps=0), ValueError, "GroupNorm eps must be a positive number"),
        (
            lambda: nn.GroupNorm(2, 4)(np.ones((2, 6, 3), np.float32)),
            ValueError,
            r"expected input \(N, 4",
        ),
        (lambda: nn.LayerNorm(0), ValueError, "LayerNorm normalized_shape must be a positive"),
        (
            lambda: nn.LayerNorm(5)(np.ones((2, 4), np.float32)),
            ValueError,
            r"last dimensions are \(5,\)",
        ),
        (
            lambda: nn.InstanceNorm2d(3, momentum=2),
            ValueError,
            "InstanceNorm2d momentum must be in",
        ),
        (
            lambda: nn.InstanceNorm2d(3, affine=True)(np.ones((2, 4, 3, 3), np.float32)),
            ValueError,
            "expected input with 3 channels",
        ),
    ],
)
def test_sample_norm_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()
