"""The fast kernels equal the textbook loops of cnnkit.functional.reference (a second oracle)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit.functional as F
from cnnkit import nn
from cnnkit.functional import reference as R

SETTINGS = settings(max_examples=15, deadline=None)


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 2]))
    config = {
        "groups": groups,
        "in_channels": groups * draw(st.integers(1, 2)),
        "out_channels": groups * draw(st.integers(1, 2)),
        "kernel": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "stride": (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        "dilation": (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        "padding": ((draw(st.integers(0, 2)),) * 2, (draw(st.integers(0, 2)),) * 2),
    }
    config["size"] = (draw(st.integers(5, 7)), draw(st.integers(5, 7)))
    config["seed"] = draw(st.integers(0, 2**16))
    return config


@SETTINGS
@given(conv_configs())
def test_conv2d_and_its_delta_rule_equal_the_fast_kernel(config):
    rng = np.random.default_rng(config["seed"])
    x = rng.standard_normal((2, config["in_channels"], *config["size"]))
    w = rng.standard_normal(
        (config["out_channels"], config["in_channels"] // config["groups"], *config["kernel"])
    )
    b = rng.standard_normal(config["out_channels"])
    args = (config["stride"], config["padding"], config["dilation"], config["groups"])
    fast, cache = F.conv2d(x, w, b, *args)
    _close(R.conv2d(x, w, b, *args), fast)
    delta = rng.standard_normal(fast.shape)
    for got, want in zip(R.conv2d_backward(delta, x, w, *args), F.conv2d_backward(delta, cache)):
        _close(got, want)


@SETTINGS
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 1),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_pooling_equals_the_fast_kernels(kernel, stride, padding, count_include_pad, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 6, 5))
    padding = min(padding, kernel // 2)
    fast, cache = F.max_pool2d(x, kernel, stride, padding)
    _close(R.max_pool2d(x, kernel, stride, padding), fast)
    delta = rng.standard_normal(fast.shape)
    _close(
        R.max_pool2d_backward(delta, x, kernel, stride, padding),
        F.max_pool2d_backward(delta, cache),
    )

    fast, cache = F.avg_pool2d(x, kernel, stride, padding, count_include_pad=count_include_pad)
    _close(R.avg_pool2d(x, kernel, stride, padding, count_include_pad), fast)
    _close(
        R.avg_pool2d_backward(delta, x.shape, kernel, stride, padding, count_include_pad),
        F.avg_pool2d_backward(delta, cache),
    )


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 4), st.integers(0, 2**16))
def test_batch_norm_equals_the_fast_kernel(batch, channels, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch + 1, channels, 3, 4)) * 2 + 1
    gamma, beta = rng.standard_normal(channels), rng.standard_normal(channels)
    running_mean, running_var = np.zeros(channels), np.ones(channels)
    fast, cache = F.batch_norm(x, running_mean, running_var, gamma, beta, training=True)
    out, _ = R.batch_norm(x, gamma, beta)
    _close(out, fast)
    delta = rng.standard_normal(x.shape)
    for got, want in zip(
        R.batch_norm_backward(delta, x, gamma), F.batch_norm_backward(delta, cache)
    ):
        _close(got, want)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**16))
def test_linear_equals_the_fast_kernel(rows, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((rows, n_in)), rng.standard_normal((n_out, n_in)), None
    b = rng.standard_normal(n_out)
    fast, cache = F.linear(x, w, b)
    _close(R.linear(x, w, b), fast)
    delta = rng.standard_normal(fast.shape)
    for got, want in zip(R.linear_backward(delta, x, w), F.linear_backward(delta, cache)):
        _close(got, want)


@SETTINGS
@given(st.integers(1, 5), st.integers(2, 6), st.integers(0, 2**16))
def test_softmax_cross_entropy_equals_the_fast_kernel(rows, classes, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((rows, classes)) * 5
    labels = rng.integers(0, classes, rows)
    loss, cache = F.cross_entropy(logits, labels)
    _close(R.softmax_cross_entropy(logits, labels), loss)
    _close(R.softmax_cross_entropy_backward(logits, labels), F.cross_entropy_backward(cache))


def test_zero_pad_places_the_image_inside_the_zeros():
    image = np.arange(6.0).reshape(1, 1, 2, 3)
    padded = R.zero_pad(image, ((1, 0), (0, 2)))
    assert padded.shape == (1, 1, 3, 5)
    np.testing.assert_array_equal(padded[0, 0, 1:, :3], image[0, 0])
    assert padded.sum() == image.sum()


def _small_model_gradients(x, labels):
    rng = np.random.default_rng(3)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=np.float64, rng=rng),
        nn.BatchNorm2d(4, dtype=np.float64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1, groups=2, dtype=np.float64, rng=rng),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4, 3, dtype=np.float64, rng=rng),
    )
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(model(x), labels)
    dx = model.backward(loss_fn.backward())
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    return loss, dx, grads, model.state_dict()


def test_cnnkit_kernels_reference_runs_a_whole_model_on_the_loops(monkeypatch):
    """CNNKIT_KERNELS=reference: every layer of a small model runs on the loops, same numbers."""
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((3, 2, 4, 4)), np.array([0, 2, 1])
    fast = _small_model_gradients(x, labels)
    calls = []

    def counted(name):
        loop = getattr(R, name)

        def run(*args, **kwargs):
            calls.append(name)
            return loop(*args, **kwargs)

        return run

    for name in ("conv2d", "max_pool2d", "avg_pool2d", "batch_norm", "linear"):
        for loop_name in (name, name + "_backward"):
            monkeypatch.setattr(R, loop_name, counted(loop_name))
    for loop_name in ("softmax_cross_entropy", "softmax_cross_entropy_backward"):
        monkeypatch.setattr(R, loop_name, counted(loop_name))
    monkeypatch.setenv("CNNKIT_KERNELS", "reference")
    loops = _small_model_gradients(x, labels)
    every_loop = {
        f"{name}{suffix}"
        for name in (
            "conv2d",
            "max_pool2d",
            "avg_pool2d",
            "batch_norm",
            "linear",
            "softmax_cross_entropy",
        )
        for suffix in ("", "_backward")
    }
    assert set(calls) >= every_loop
    assert abs(loops[0] - fast[0]) < 1e-12
    np.testing.assert_allclose(loops[1], fast[1], rtol=1e-9, atol=1e-13)
    for name, grad in fast[2].items():
        np.testing.assert_allclose(loops[2][name], grad, rtol=1e-9, atol=1e-13, err_msg=name)
    for name, value in fast[3].items():
        np.testing.assert_allclose(loops[3][name], value, rtol=1e-12, err_msg=name)
