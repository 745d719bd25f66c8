"""Winograd convolution and the CNNKIT_CONV_PATH switch against PyTorch.

Every forced path runs random shapes (odd sizes, sizes that are no multiple of the tile, 1x1
images with padding, asymmetric padding) in float64 (rtol 1e-10) and float32 (the tolerance of
tests/test_functional.py; F(4x4, 3x3) rounds 10-20x worse than im2col in float32, see
cnnkit/functional/winograd.py, and gets its measured bound relative to the largest value),
forward and all three gradients. Then central differences, the inference cache of the
transformed weights, the switch's errors and the automatic rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from checks import record_calls
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

import cnnkit
from cnnkit.functional import _compiled, _parallel, _weight_cache, winograd
from cnnkit.functional import conv as conv_module
from cnnkit.functional.conv import conv2d, conv2d_backward
from cnnkit.gradcheck import assert_gradcheck

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")

FORCED = ("winograd2", "winograd4", "grid", "im2col", "pointwise")
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def tolerance(path: str, dtype, expected: np.ndarray) -> dict:
    """The float32 tolerance, for F(4x4, 3x3) widened to 2e-5 of the largest value (measured
    worst: 1.6e-5)."""
    if path == "winograd4" and dtype == np.float32:
        return dict(rtol=1e-4, atol=2e-5 * max(1.0, float(np.abs(expected).max())))
    return TOL[dtype]


def torch_reference(x, weight, bias, dout, pad):
    """(y, dx, dweight, dbias) from torch on x padded explicitly by ((top, bottom), (l, r))."""
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    padded = torch.nn.functional.pad(xt, (pad[1][0], pad[1][1], pad[0][0], pad[0][1]))
    yt = torch.nn.functional.conv2d(padded, wt, bt)
    yt.backward(torch.tensor(dout))
    return [t.detach().numpy() for t in (yt, xt.grad, wt.grad, bt.grad)]


padding_choice = st.one_of(
    st.sampled_from([0, 1, 2]).map(lambda p: ((p, p), (p, p))),
    st.tuples(
        st.tuples(st.integers(0, 2), st.integers(0, 2)),
        st.tuples(st.integers(0, 2), st.integers(0, 2)),
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    path=st.sampled_from(FORCED),
    dtype=st.sampled_from([np.float64, np.float32]),
    n=st.integers(1, 3),
    c_in=st.integers(1, 8),
    c_out=st.integers(1, 8),
    hw=st.tuples(st.integers(1, 11), st.integers(1, 11)),
    pad=padding_choice,
    seed=st.integers(0, 2**16),
)
def test_forced_path_matches_torch(path, dtype, n, c_in, c_out, hw, pad, seed):
    k = 1 if path == "pointwise" else 3
    for axis in range(2):
        assume(hw[axis] + sum(pad[axis]) >= k)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, *hw)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in, k, k)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNKIT_CONV_PATH", path)
        out, cache = conv2d(x, weight, bias, padding=pad)
        dout = rng.standard_normal(out.shape).astype(dtype)
        ours = (out, *conv2d_backward(dout, cache))
    assert cache.path == path
    expected = torch_reference(x, weight, bias, dout, pad)
    for name, got, want in zip(("y", "dL/dx", "dL/dW", "dL/db"), ours, expected, strict=True):
        assert got.dtype == dtype and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, err_msg=name, **tolerance(path, dtype, want))


@pytest.mark.parametrize("path", ["winograd2", "winograd4"])
@pytest.mark.parametrize("pad", [((1, 1), (1, 1)), ((0, 2), (2, 1))])
def test_winograd_gradcheck(path, pad, rng, monkeypatch):
    monkeypatch.setenv("CNNKIT_CONV_PATH", path)
    x = rng.standard_normal((2, 3, 5, 7))
    weight = rng.standard_normal((4, 3, 3, 3))

    def forward(x, weight):
        out, cache = conv2d(x, weight, padding=pad)
        assert cache.path == path
        return out, cache

    def backward(dout, cache):
        return conv2d_backward(dout, cache)[:2]

    assert_gradcheck((forward, backward), x, weight)


def test_input_gradient_skipped(rng, monkeypatch):
    monkeypatch.setenv("CNNKIT_CONV_PATH", "winograd2")
    x, weight = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    out, cache = conv2d(x, weight, padding=1)
    dout = rng.standard_normal(out.shape)
    dx, dweight, _ = conv2d_backward(dout, cache, input_gradient=False)
    assert dx is None
    np.testing.assert_allclose(dweight, conv2d_backward(dout, cache)[1], rtol=1e-13)


def test_image_chunks_give_the_same_result(rng, monkeypatch):
    """A chunk budget of one image at a time changes nothing."""
    monkeypatch.setenv("CNNKIT_CONV_PATH", "winograd4")
    x, weight = rng.standard_normal((3, 2, 7, 9)), rng.standard_normal((3, 2, 3, 3))
    dout = rng.standard_normal((3, 3, 7, 9))
    out, cache = conv2d(x, weight, padding=1)
    whole = (out, *conv2d_backward(dout, cache)[:2])
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    out, cache = conv2d(x, weight, padding=1)
    for got, want in zip((out, *conv2d_backward(dout, cache)[:2]), whole, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_weight_cache_sees_in_place_updates(rng, monkeypatch):
    monkeypatch.setenv("CNNKIT_CONV_PATH", "winograd2")
    _weight_cache.CACHE.clear()
    calls = record_calls(monkeypatch, winograd, "weight_transform")
    x = rng.standard_normal((2, 3, 6, 5))
    weight = rng.standard_normal((4, 3, 3, 3))
    with cnnkit.no_grad():
        first, _ = conv2d(x, weight, padding=1)
        again, _ = conv2d(x, weight, padding=1)
        assert len(calls) == 1  # the second call reused U
        np.testing.assert_array_equal(first, again)
        weight *= 0.5  # in place, as an optimizer step: same array, same address
        weight[0, 0, 0, 0] = -0.0
        halved, _ = conv2d(x, weight, padding=1)
        assert len(calls) == 2
        view, _ = conv2d(x, weight.reshape(4, 3, 3, 3), padding=1)  # a new view object
        assert len(calls) == 2
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(weight), padding=1)
    np.testing.assert_allclose(halved, expected.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(view, halved)


def test_weight_cache_evicts_beyond_its_budget(rng, monkeypatch):
    monkeypatch.setattr(_weight_cache, "CACHE_BYTES", 1)
    _weight_cache.CACHE.clear()
    weight = rng.standard_normal((2, 2, 3, 3))
    with cnnkit.no_grad():
        winograd.transformed_weight(weight, winograd.F2)
    assert not _weight_cache.CACHE._entries


def test_invalid_path_names_variable_value_and_choices(monkeypatch):
    monkeypatch.setenv("CNNKIT_CONV_PATH", "fastest")
    x, weight = np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3))
    message = (
        "CNNKIT_CONV_PATH='fastest' is not one of auto, winograd2, winograd4, grid, im2col, "
        "pointwise"
    )
    with pytest.raises(ValueError, match=f"^{message}$"):
        conv2d(x, weight)


@pytest.mark.parametrize(
    "path, weight_shape, stride, expected",
    [
        ("winograd2", (4, 3, 3, 3), 2, "auto"),  # stride 2
        ("winograd4", (4, 3, 5, 5), 1, "auto"),
        ("pointwise", (4, 3, 3, 3), 1, "auto"),
        ("grid", (4, 3, 1, 1), 1, "auto"),
        ("grid", (4, 3, 3, 3), 2, "auto"),
        ("grid", (24, 3, 3, 3), 1, "grid"),  # 8x widening: auto keeps im2col, grid is forced
        ("im2col", (3, 1, 3, 3), 1, "im2col"),  # depthwise too
    ],
)
def test_forced_path_applies_where_it_can(path, weight_shape, stride, expected, monkeypatch):
    """A forced path runs every layer it can compute; the others keep the automatic rule."""
    groups = 3 if weight_shape[1] == 1 else 1
    x, weight = np.ones((1, 3, 8, 8)), np.ones(weight_shape)
    paths = []
    for value in (path, "auto"):
        monkeypatch.setenv("CNNKIT_CONV_PATH", value)
        paths.append(conv2d(x, weight, stride=stride, padding=1, groups=groups)[1].path)
    assert paths[0] == (paths[1] if expected == "auto" else expected)
    assert paths[0] != path or expected != "auto"


def test_switch_is_read_at_every_call(monkeypatch):
    x, weight = np.ones((1, 2, 6, 6)), np.ones((2, 2, 3, 3))
    paths = []
    for value in ("winograd4", "im2col", "auto"):
        monkeypatch.setenv("CNNKIT_CONV_PATH", value)
        paths.append(conv2d(x, weight, padding=1)[1].path)
    assert paths == ["winograd4", "im2col", "grid"]


def test_reference_kernels_run_whatever_the_switch(monkeypatch):
    monkeypatch.setenv("CNNKIT_CONV_PATH", "winograd2")
    monkeypatch.setenv("CNNKIT_KERNELS", "reference")
    _, cache = conv2d(np.ones((1, 2, 4, 4)), np.ones((2, 2, 3, 3)), padding=1)
    assert cache.path == "reference"


@pytest.mark.parametrize(
    "dtype, channels, size, expected",
    [
        (np.float32, 128, 14, "winograd2"),
        (np.float32, 128, 7, "grid"),
        (np.float32, 64, 16, "grid"),
        (np.float64, 32, 8, "winograd4"),
        (np.float64, 16, 32, "grid"),
    ],
)
def test_automatic_rule_with_numpy_transforms(dtype, channels, size, expected, monkeypatch):
    monkeypatch.delenv("CNNKIT_CONV_PATH", raising=False)
    monkeypatch.setattr(_compiled, "ENABLED", False)
    shape, weight_shape = (1, channels, size, size), (channels, channels, 3, 3)
    one, pad = (1, 1), ((1, 1), (1, 1))
    with threadpool_limits(1, "blas"):
        path, _ = conv_module._plan(shape, weight_shape, 1, one, pad, one, (size, size), dtype)
    assert path == expected


def test_float32_numpy_winograd_in_training_only_on_one_blas_thread(monkeypatch):
    monkeypatch.delenv("CNNKIT_CONV_PATH", raising=False)
    monkeypatch.setattr(_compiled, "ENABLED", False)
    monkeypatch.setattr(_parallel, "MIN_PART_BYTES", 1)
    one, pad = (1, 1), ((1, 1), (1, 1))
    weight_shape = (128, 128, 3, 3)
    with threadpool_limits(2, "blas"):  # one image: no split, the kernels run two BLAS threads
        path, _ = conv_module._plan(
            (1, 128, 16, 16), weight_shape, 1, one, pad, one, (16, 16), np.float32
        )
        assert path == "grid"
        # two images, one per thread (one BLAS thread each): F(2, 3) from 256 channels
        path, slices = conv_module._plan(
            (2, 128, 16, 16), weight_shape, 1, one, pad, one, (16, 16), np.float32
        )
        assert (path, slices) == ("grid", [slice(0, 1), slice(1, 2)])
        wider = (256, 256, 3, 3)
        path, _ = conv_module._plan((2, 256, 16, 16), wider, 1, one, pad, one, (16, 16), np.float32)
    assert path == "winograd2"


def planned_paths(monkeypatch, compiled, shape, weight_shape, threads) -> tuple[str, str]:
    """(the training path, the inference path) _plan picks for a 3x3 'same' float32 layer on
    ``threads`` BLAS threads, with compiled kernels on or off and no part floor."""
    monkeypatch.delenv("CNNKIT_CONV_PATH", raising=False)
    monkeypatch.setattr(_compiled, "ENABLED", compiled)
    monkeypatch.setattr(_parallel, "MIN_PART_BYTES", 1)
    one, pad, size = (1, 1), ((1, 1), (1, 1)), shape[2:]
    arguments = (shape, weight_shape, 1, one, pad, one, size, np.float32)
    with threadpool_limits(threads, "blas"):
        training = conv_module._plan(*arguments)[0]
        with cnnkit.no_grad():
            return training, conv_module._plan(*arguments)[0]


@pytest.mark.parametrize(
    "batch, channels, size, training, inference",
    [
        (2, 128, 7, "grid", "winograd2"),  # batch split: from 128 channels, 7 x 7
        (2, 64, 16, "grid", "grid"),
        (1, 256, 14, "padded", "winograd2"),  # one image on two BLAS threads: 256, 14 x 14
        (1, 256, 7, "padded", "padded"),
        (1, 128, 16, "grid", "grid"),
    ],
)
def test_float32_inference_takes_numpy_winograd_more_widely(
    monkeypatch, batch, channels, size, training, inference
):
    shape, weight_shape = (batch, channels, size, size), (channels, channels, 3, 3)
    paths = planned_paths(monkeypatch, False, shape, weight_shape, 2)
    assert paths == (training, inference)


@pytest.mark.parametrize(
    "batch, c_in, channels, size, threads, training, inference",
    [
        (128, 16, 16, 32, 2, "grid", "grid"),  # 16 and 32 channels: the grid
        (128, 32, 32, 16, 2, "grid", "winograd2"),
        (128, 64, 64, 8, 2, "grid", "grid"),  # 8 x 8: the grid
        (64, 64, 64, 16, 2, "winograd2", "winograd2"),  # from 64 channels, 14 x 14
        (16, 64, 64, 56, 1, "winograd2", "winograd2"),
        (1, 32, 64, 112, 2, "grid", "winograd2"),  # inference from 32 channels
        (1, 512, 512, 7, 2, "padded", "padded"),  # 7 x 7, one image: im2col
        (2, 128, 128, 7, 2, "grid", "winograd2"),  # 7 x 7 split in inference from 128
    ],
)
def test_float32_rule_with_compiled_transforms(
    monkeypatch, batch, c_in, channels, size, threads, training, inference
):
    """With numba, F(2, 3)'s compiled transforms win from 64 channels in training and from 32
    in inference, on outputs of at least 14 x 14 (the table beside conv._winograd_rule)."""
    shape, weight_shape = (batch, c_in, size, size), (channels, c_in, 3, 3)
    paths = planned_paths(monkeypatch, True, shape, weight_shape, threads)
    assert paths == (training, inference)
