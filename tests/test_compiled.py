"""The compiled kernels (numba) compute exactly what the NumPy reference kernels compute.

Every other test runs whichever kernels are active (compiled ones when numba is installed, as in
the test extra); here each compiled kernel is compared with the NumPy code it replaces, which is
forced by switching ``_compiled.ENABLED`` off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cnnkit.functional import _compiled, pool
from cnnkit.functional._bitmask import BitMask, bits_shape
from cnnkit.functional.activation import relu, relu_backward
from cnnkit.functional.conv import conv2d, conv2d_backward
from cnnkit.functional.modern_activation import hardtanh
from cnnkit.functional.norm import batch_norm, batch_norm_backward
from cnnkit.functional.pool import max_pool2d, max_pool2d_backward

pytestmark = pytest.mark.skipif(
    _compiled.numba is None, reason="needs numba: pip install -e '.[fast]'"
)


def with_kernels(compiled: bool, function, *args, **kwargs):
    """Call ``function`` with the compiled kernels switched on or off."""
    previous = _compiled.ENABLED
    _compiled.ENABLED = compiled
    try:
        return function(*args, **kwargs)
    finally:
        _compiled.ENABLED = previous


def both(function, *args, **kwargs):
    return with_kernels(True, function, *args, **kwargs), with_kernels(
        False, function, *args, **kwargs
    )


def max_pool_round_trip(x, dout_seed, **options):
    out, cache = max_pool2d(x, **options)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(x.dtype)
    dx = max_pool2d_backward(dout, cache)
    return out, cache.argmax, dx


pool_case = st.fixed_dictionaries(
    {
        "n": st.integers(1, 3),
        "c": st.integers(1, 4),
        "h": st.integers(1, 9),
        "w": st.integers(1, 9),
        "kernel": st.integers(1, 4),
        "stride": st.integers(1, 3),
        "padding": st.sampled_from([0, 1, "same"]),
        "dtype": st.sampled_from([np.float32, np.float64]),
        "seed": st.integers(0, 2**16),
    }
)


def random_pool_input(case) -> np.ndarray:
    """Few distinct values make ties common; some NaN and -inf test the routing rules."""
    rng = np.random.default_rng(case["seed"])
    shape = (case["n"], case["c"], case["h"], case["w"])
    x = rng.integers(-2, 3, shape).astype(case["dtype"])
    x[rng.random(shape) < 0.1] = np.nan
    x[rng.random(shape) < 0.15] = -np.inf
    return x


@pytest.mark.parametrize("by_window", [False, True], ids=["phase planes", "by window"])
@settings(max_examples=120, deadline=None)
@given(case=pool_case)
def test_compiled_max_pool_equals_numpy_with_ties_nan_and_infinities(by_window, case):
    x = random_pool_input(case)
    kernel = min(case["kernel"], case["h"], case["w"])
    padding = 0 if case["padding"] == 1 and kernel < 2 else case["padding"]
    options = dict(kernel_size=kernel, stride=case["stride"], padding=padding)
    if options == dict(kernel_size=2, stride=2, padding=0):
        options["padding"] = ((0, 0), (0, 1))  # 2x2 windows without padding take their own kernel
    limit = 10**9 if by_window else 0  # every plane takes the chosen compiled kernel
    with patch.object(pool, "WINDOW_KERNEL_MAX_OUTPUTS", limit):
        compiled, reference = both(max_pool_round_trip, x, case["seed"], **options)
    np.testing.assert_array_equal(compiled[0], reference[0])
    np.testing.assert_array_equal(compiled[1], reference[1])
    # an input that wins several windows sums their gradients in another order
    rtol = 1e-6 if case["dtype"] == np.float32 else 1e-14
    np.testing.assert_allclose(compiled[2], reference[2], rtol=rtol, atol=rtol)


@settings(max_examples=150, deadline=None)
@given(case=pool_case.filter(lambda case: min(case["h"], case["w"]) >= 2))
def test_compiled_2x2_max_pool_equals_numpy_with_ties_nan_and_infinities(case):
    x = random_pool_input(case)  # odd sizes leave a last row or column in no window
    compiled, reference = both(max_pool_round_trip, x, case["seed"], kernel_size=2)
    for got, expected in zip(compiled, reference, strict=True):  # disjoint windows: exact
        np.testing.assert_array_equal(got, expected)


def test_compiled_2x2_max_pool_spans_several_chunks(rng):
    x = rng.integers(-2, 3, (3, 5, 40, 30)).astype(np.float32)  # 3 * 5 * 20 * 15 > PAIRS_CHUNK
    x[rng.random(x.shape) < 0.05] = np.nan
    compiled, reference = both(max_pool_round_trip, x, 0, kernel_size=2)
    for got, expected in zip(compiled, reference, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("options", [dict(kernel_size=2), dict(kernel_size=3, stride=2)])
@pytest.mark.parametrize(
    ("x_dtype", "dout_dtype"), [(np.float32, np.float64), (np.float64, np.float32)]
)
def test_compiled_max_pool_takes_an_upstream_gradient_of_another_dtype(
    rng, options, x_dtype, dout_dtype
):
    x = rng.standard_normal((2, 3, 9, 8)).astype(x_dtype)
    x[0, 0, 0, :2] = 2.0, 2.0 + 1e-12  # in float64 the second wins; rounded to float32, a tie

    def round_trip():
        out, cache = max_pool2d(x, **options)
        dout = np.random.default_rng(0).standard_normal(out.shape).astype(dout_dtype)
        return out, cache.argmax, max_pool2d_backward(dout, cache)

    compiled, reference = both(round_trip)
    assert compiled[2].dtype == reference[2].dtype == dout_dtype
    np.testing.assert_array_equal(compiled[0], reference[0])
    np.testing.assert_array_equal(compiled[1], reference[1])
    # overlapping windows sum an input's gradients in another order: rounding of the wider
    # dtype only, where gradients carried in float32 would be off by 1e-8
    np.testing.assert_allclose(compiled[2], reference[2], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize(
    ("size", "options", "kernel_name"),
    [
        (10, dict(kernel_size=2), "max_pool_backward_2x2"),
        (11, dict(kernel_size=2), "max_pool_backward_2x2"),
        (10, dict(kernel_size=2, padding=1), "max_pool_backward_by_window"),  # 6x6 outputs
        (9, dict(kernel_size=3, stride=2, padding="same"), "max_pool_backward_by_window"),  # 5x5
        (13, dict(kernel_size=3, stride=2, padding="same"), "max_pool_backward"),  # 7x7
        (14, dict(kernel_size=2, stride=1), "max_pool_backward"),  # 13x13, overlapping
    ],
)
def test_max_pool_backward_takes_the_kernel_that_suits_the_windows(rng, size, options, kernel_name):
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    out, cache = max_pool2d(x, **options)
    kernel = getattr(_compiled, kernel_name)
    with patch.object(_compiled, kernel_name, wraps=kernel) as spy:
        max_pool2d_backward(np.ones_like(out), cache)
    spy.assert_called_once()


depthwise_case = st.fixed_dictionaries(
    {
        "n": st.integers(1, 3),
        "c": st.integers(2, 5),
        "h": st.integers(3, 10),
        "w": st.integers(3, 10),
        "kernel": st.sampled_from([(1, 1), (3, 3), (2, 3), (3, 1), (5, 5), (1, 4)]),
        "stride": st.sampled_from([1, 2, 3, (2, 1), (1, 2)]),
        "dilation": st.sampled_from([1, 1, 2, (1, 2)]),
        "padding": st.sampled_from([0, 1, 2, "same", ((0, 2), (2, 1))]),
        "dtype": st.sampled_from([np.float32, np.float64]),
        "seed": st.integers(0, 2**16),
    }
)


def depthwise_round_trip(x, weight, bias, dout_seed, **options):
    out, cache = conv2d(x, weight, bias, groups=x.shape[1], **options)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(x.dtype)
    return (out, *conv2d_backward(dout, cache))


def depthwise_fits(case) -> bool:
    """Whether conv2d takes the case: the dilated kernel fits in the padded input."""
    padding = case["padding"]
    pads = {0: (0, 0), 1: (2, 2), 2: (4, 4), "same": None, ((0, 2), (2, 1)): (2, 3)}[padding]
    if pads is None:
        return True
    dilation = case["dilation"] if isinstance(case["dilation"], tuple) else (case["dilation"],) * 2
    reach = [dilation[i] * (case["kernel"][i] - 1) + 1 for i in range(2)]
    return reach[0] <= case["h"] + pads[0] and reach[1] <= case["w"] + pads[1]


@settings(max_examples=150, deadline=None)
@given(depthwise_case.filter(depthwise_fits))
@example(  # MobileNet's stride-2 3x3 'same' depthwise layer on an odd plane
    {
        "n": 2,
        "c": 3,
        "h": 9,
        "w": 7,
        "kernel": (3, 3),
        "stride": 2,
        "dilation": 1,
        "padding": "same",
        "dtype": np.float32,
        "seed": 0,
    }
)
def test_compiled_depthwise_convolution_equals_numpy(case):
    """Every stride and dilation: the compiled phase-plane loops against conv._depthwise_*."""
    rng = np.random.default_rng(case["seed"])
    c, dtype = case["c"], case["dtype"]
    x = rng.standard_normal((case["n"], c, case["h"], case["w"])).astype(dtype)
    weight = rng.standard_normal((c, 1, *case["kernel"])).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    options = dict(stride=case["stride"], dilation=case["dilation"], padding=case["padding"])
    compiled, reference = both(depthwise_round_trip, x, weight, bias, case["seed"], **options)
    out, dx, dweight, dbias = compiled
    # the forward sums the same products in the same order; backward reorders the weight sums
    np.testing.assert_array_equal(out, reference[0])
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dx, reference[1], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dweight, reference[2], rtol=rtol, atol=rtol * np.abs(x).sum())
    np.testing.assert_array_equal(dbias, reference[3])


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_convolution_takes_the_compiled_loops_at_every_stride(rng, stride):
    x = rng.standard_normal((2, 3, 9, 9))
    weight = rng.standard_normal((3, 1, 3, 3))
    with patch.object(_compiled, "depthwise_forward", wraps=_compiled.depthwise_forward) as spy:
        out, cache = conv2d(x, weight, stride=stride, padding=1, groups=3)
    spy.assert_called_once()
    assert cache.path == "depthwise"
    compiled, reference = both(conv2d, x, weight, stride=stride, padding=1, groups=3)
    np.testing.assert_array_equal(compiled[0], reference[0])


def test_compiled_depthwise_convolution_of_a_non_contiguous_input(rng):
    x = rng.standard_normal((2, 6, 9, 8)).astype(np.float32)[:, ::2]
    weight = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    compiled, reference = both(depthwise_round_trip, x, weight, None, 0, stride=2, padding=1)
    np.testing.assert_array_equal(compiled[0], reference[0])
    np.testing.assert_allclose(compiled[1], reference[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_compiled_depthwise_convolution_stacks_the_images_of_a_channel(rng, stride):
    """Several images' planes of one channel in one run, the last group shorter than the rest:
    the same outputs, bit for bit, and gradients as the NumPy kernels."""
    x = rng.standard_normal((11, 2, 60, 61)).astype(np.float32)
    weight = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    out_h, out_w = (60 - 1) // stride + 1, (61 - 1) // stride + 1
    _, _, size, _ = _compiled._depthwise_grid(out_h, out_w, 3, 3, stride, stride, 1, 1)
    assert 1 < _compiled._stacked_images(11, stride * stride * size) < 11
    options = dict(stride=stride, padding=1)
    compiled, reference = both(depthwise_round_trip, x, weight, None, 0, **options)
    np.testing.assert_array_equal(compiled[0], reference[0])
    np.testing.assert_allclose(compiled[1], reference[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(compiled[2], reference[2], rtol=1e-4, atol=1e-3)


def test_environment_variable_selects_the_numpy_kernels():
    code = "from cnnkit.functional import _compiled; print(_compiled.ENABLED)"
    for value, expected in (("numpy", "False"), ("auto", "True")):
        env = dict(os.environ, CNNKIT_KERNELS=value)
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == expected


conv_case = st.fixed_dictionaries(
    {
        "n": st.integers(1, 3),
        "groups": st.sampled_from([1, 2]),
        "c_per_group": st.integers(1, 3),
        "out_per_group": st.integers(1, 3),
        "h": st.integers(5, 9),
        "w": st.integers(5, 9),
        "kernel": st.sampled_from([(1, 1), (3, 3), (2, 3)]),
        "stride": st.sampled_from([1, 2, (2, 1)]),
        "dilation": st.sampled_from([1, 2]),
        "padding": st.sampled_from([0, 1, "same"]),
        "dtype": st.sampled_from([np.float32, np.float64]),
        "seed": st.integers(0, 2**16),
    }
)


def conv_round_trip(x, weight, dout_seed, **options):
    out, cache = conv2d(x, weight, **options)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(x.dtype)
    return (out, *conv2d_backward(dout, cache)[:2])


@settings(max_examples=80, deadline=None)
@given(conv_case)
def test_compiled_im2col_and_col2im_equal_numpy_in_general_convolution(case):
    rng = np.random.default_rng(case["seed"])
    groups, dtype = case["groups"], case["dtype"]
    c_in, c_out = groups * case["c_per_group"], groups * case["out_per_group"]
    x = rng.standard_normal((case["n"], c_in, case["h"], case["w"])).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, *case["kernel"])).astype(dtype)
    options = dict(
        stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=groups
    )
    compiled, reference = both(conv_round_trip, x, weight, case["seed"], **options)
    # the same columns go into the same GEMMs (BLAS may round the last bit differently for
    # buffers at other addresses), and col2im adds the taps in the same order
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    for ours, theirs in zip(compiled, reference, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


def test_scratch_buffers_are_reused_per_purpose_and_thread():
    import threading

    from cnnkit.functional._scratch import scratch

    first = scratch("test a", (4, 5), np.float32)
    again = scratch("test a", (2, 3), np.float64)
    assert first.shape == (4, 5) and again.shape == (2, 3) and again.dtype == np.float64
    assert np.shares_memory(first, again)
    assert not np.shares_memory(first, scratch("test b", (4, 5), np.float32))
    grown = scratch("test a", (100,), np.float64)
    assert grown.nbytes == 800 and not np.shares_memory(grown, first)
    other_thread = []
    worker = threading.Thread(target=lambda: other_thread.append(scratch("test a", (100,), float)))
    worker.start()
    worker.join()
    assert not np.shares_memory(other_thread[0], grown)


batch_norm_case = st.fixed_dictionaries(
    {
        "shape": st.sampled_from([(5, 3), (4, 3, 7), (3, 4, 5, 6), (2, 1, 3, 3)]),
        "affine": st.booleans(),
        "mean": st.sampled_from([0.0, 100.0]),
        "strided_dout": st.booleans(),
        "dtype": st.sampled_from([np.float32, np.float64]),
        "seed": st.integers(0, 2**16),
    }
)


def batch_norm_round_trip(x, gamma, beta, dout):
    running_mean, running_var = np.zeros(x.shape[1], x.dtype), np.ones(x.shape[1], x.dtype)
    out, cache = batch_norm(x, running_mean, running_var, gamma, beta, training=True)
    gradients = batch_norm_backward(dout, cache)  # before x_hat(), which would keep xhat
    return (out, cache.x_hat(), running_mean, running_var, *gradients)


@settings(max_examples=60, deadline=None)
@given(batch_norm_case)
@example(  # a float64 sum of the mean (NumPy's is float32) made dgamma differ by 0.4% here
    {
        "shape": (2, 1, 3, 3),
        "affine": True,
        "mean": 100.0,
        "strided_dout": False,
        "dtype": np.float32,
        "seed": 3569,
    }
)
def test_compiled_batch_norm_equals_numpy(case):
    rng = np.random.default_rng(case["seed"])
    dtype, channels = case["dtype"], case["shape"][1]
    x = (rng.standard_normal(case["shape"]) * 3 + case["mean"]).astype(dtype)
    gamma = rng.standard_normal(channels).astype(dtype) if case["affine"] else None
    beta = rng.standard_normal(channels).astype(dtype) if case["affine"] else None
    dout = rng.standard_normal(case["shape"]).astype(dtype)
    if case["strided_dout"]:  # not C-contiguous: the backward pass takes the NumPy formulas
        dout = np.repeat(dout, 2, axis=0)[::2]
    compiled, reference = both(batch_norm_round_trip, x, gamma, beta, dout)
    # the compiled sums accumulate in float64, NumPy's pairwise in the input's dtype
    rtol = 2e-4 if dtype == np.float32 else 1e-10
    for ours, theirs in zip(compiled, reference, strict=True):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


relu_cases = dict(
    shape=st.sampled_from([(7,), (3, 5), (2, 3, 4, 5), (1, 1, 1, 1)]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)


def with_specials(rng, shape, dtype, specials) -> np.ndarray:
    """Normal values with as many of ``specials`` as fit written at random places."""
    values = rng.standard_normal(shape).astype(dtype)
    count = min(values.size, len(specials))
    values.flat[rng.integers(0, values.size, size=count)] = np.array(specials, dtype)[:count]
    return values


@settings(max_examples=40, deadline=None)
@given(**relu_cases)
def test_compiled_relu_equals_numpy_bit_for_bit(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = with_specials(rng, shape, dtype, [np.nan, np.inf, -np.inf, 0.0, -0.0])
    (ours, our_mask), (theirs, their_mask) = both(relu, x)
    assert ours.dtype == theirs.dtype == dtype
    np.testing.assert_array_equal(our_mask.bits, their_mask.bits)
    np.testing.assert_array_equal(our_mask.unpack(), ~(x <= 0))  # a NaN passes
    np.testing.assert_array_equal(ours, theirs)  # NaN where NaN
    np.testing.assert_array_equal(np.signbit(ours), np.signbit(theirs))  # -0.0 becomes 0.0
    written = x.copy()
    inplace, inplace_mask = with_kernels(True, relu, written, inplace=True)
    assert inplace is written
    np.testing.assert_array_equal(inplace, theirs)
    np.testing.assert_array_equal(inplace_mask.bits, their_mask.bits)


@settings(max_examples=40, deadline=None)
@given(**relu_cases, bounds=st.sampled_from([(0.0, 6.0), (-1.0, 1.0), (-0.5, 2.25), (1.0, 1.0)]))
def test_compiled_hardtanh_equals_numpy_bit_for_bit(shape, dtype, seed, bounds):
    rng = np.random.default_rng(seed)
    x = with_specials(rng, shape, dtype, [np.nan, np.inf, -np.inf, 0.0, -0.0, *bounds])
    (ours, our_mask), (theirs, their_mask) = both(hardtanh, x, *bounds)
    assert ours.dtype == theirs.dtype == dtype and our_mask.dtype == their_mask.dtype == bool
    np.testing.assert_array_equal(our_mask, their_mask)  # a NaN passes, a bound does not
    np.testing.assert_array_equal(ours, theirs)
    (inplace, _) = with_kernels(True, hardtanh, x.copy(), *bounds, inplace=True)
    np.testing.assert_array_equal(inplace, theirs)


@settings(max_examples=40, deadline=None)
@given(**relu_cases)
def test_compiled_relu_backward_equals_numpy_bit_for_bit(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    dout = with_specials(rng, shape, dtype, [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0])
    positive = rng.random(shape) < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value in multiply": inf is not times 0
        ours, theirs = both(relu_backward, dout, BitMask.pack(positive))
        np.testing.assert_array_equal(relu_backward(dout, positive), theirs)  # as a bool mask
    assert ours.dtype == theirs.dtype == dtype
    np.testing.assert_array_equal(ours, theirs)  # NaN where dout is NaN and the mask is set
    np.testing.assert_array_equal(np.signbit(ours), np.signbit(theirs))
    # torch's threshold backward: dout where the mask is set, else +0 whatever dout is
    np.testing.assert_array_equal(ours, np.where(positive, dout, 0))
    assert not np.signbit(ours[~positive]).any()


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(0, 11), min_size=0, max_size=4).map(tuple),
    seed=st.integers(0, 2**16),
)
def test_a_bit_mask_packs_each_image_into_its_own_bytes_and_unpacks_to_the_mask(shape, seed):
    mask = np.random.default_rng(seed).random(shape) < 0.5
    packed = BitMask.pack(mask)
    assert packed.bits.shape == bits_shape(shape) and packed.bits.dtype == np.uint8
    np.testing.assert_array_equal(packed.unpack(), mask)
    if len(shape) >= 2 and mask.size:  # image n's bits are np.packbits of image n alone
        rows = packed.bits.reshape(shape[0], -1)
        for n in range(shape[0]):
            expected = np.packbits(mask[n].ravel(), bitorder="little")
            np.testing.assert_array_equal(rows[n], expected)


@pytest.mark.parametrize(
    "make_mask",
    [
        lambda x: (x > 0).astype(x.dtype),  # a float mask: the bytes are not 0/1
        lambda x: np.broadcast_to(x[:1] > 0, x.shape),  # not contiguous
        lambda x: x[0] > 0,  # broadcasts against dout
    ],
)
def test_relu_backward_outside_the_compiled_loop_takes_the_numpy_kernel(rng, make_mask):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    dout = rng.standard_normal((3, 4)).astype(np.float32)
    mask = make_mask(x)
    np.testing.assert_array_equal(relu_backward(dout, mask), dout * mask)


def test_relu_of_a_non_contiguous_input_takes_the_numpy_kernel(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)[:, ::2]
    out, positive = relu(x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    np.testing.assert_array_equal(positive.unpack(), x > 0)


fused_case = st.fixed_dictionaries(
    {
        "shape": st.tuples(
            st.integers(2, 4), st.integers(1, 5), st.integers(1, 7), st.integers(1, 9)
        ),
        "affine": st.booleans(),
        "mean": st.sampled_from([0.0, 0.5, -1.0]),
        "dtype": st.sampled_from([np.float32, np.float64]),
        "seed": st.integers(0, 2**16),
    }
)


@settings(max_examples=60, deadline=None)
@given(fused_case)
def test_fused_batch_norm_relu_equals_the_two_layers_bit_for_bit(case):
    from cnnkit import nn

    rng = np.random.default_rng(case["seed"])
    x = (rng.standard_normal(case["shape"]) + case["mean"]).astype(case["dtype"])
    dout = rng.standard_normal(case["shape"]).astype(case["dtype"])

    def run(fused):
        bn = nn.BatchNorm2d(case["shape"][1], affine=case["affine"], dtype=case["dtype"])
        if case["affine"]:
            bn.weight.data[:] = rng.standard_normal(case["shape"][1])
            bn.bias.data[:] = rng.standard_normal(case["shape"][1])
        relu = nn.ReLU()
        out = bn(x, relu=relu) if fused else relu(bn(x))
        dx = bn.backward(relu.backward(dout))
        grads = [p.grad for p in bn.parameters()]
        return [out, dx, *grads, *bn.state_dict().values()]

    state = rng.bit_generator.state
    fused = run(True)
    rng.bit_generator.state = state
    for ours, theirs in zip(fused, run(False), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_sequential_fuses_batch_norm_and_relu_in_training_only(rng):
    from cnnkit import nn

    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64),
        nn.BatchNorm2d(3, dtype=np.float64),
        nn.ReLU(),
    )
    x = rng.standard_normal((4, 2, 5, 5))
    with patch.object(
        _compiled, "batch_norm_relu_forward", wraps=_compiled.batch_norm_relu_forward
    ) as spy:
        model(x)
        model.backward(np.ones((4, 3, 5, 5)))
        assert spy.call_count == 1
        model.eval()
        model(x)
        assert spy.call_count == 1
    assert list(model.state_dict()) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]


winograd_case = st.fixed_dictionaries(
    {
        "n": st.integers(1, 3),
        "c_in": st.integers(1, 5),
        "c_out": st.integers(1, 5),
        "h": st.integers(1, 10),
        "w": st.integers(1, 10),
        "padding": st.tuples(
            st.tuples(st.integers(0, 2), st.integers(0, 2)),
            st.tuples(st.integers(0, 2), st.integers(0, 2)),
        ),
        "clamp": st.sampled_from([None, (0.0, float("inf")), (-0.5, 0.75)]),
        "dtype": st.sampled_from([np.float32, np.float64]),
        "seed": st.integers(0, 2**16),
    }
).filter(lambda c: all(c[k] + sum(c["padding"][i]) >= 3 for i, k in enumerate("hw")))


@settings(max_examples=120, deadline=None)
@given(winograd_case)
@example(  # odd output rows and columns: the last tiles reach past the output
    dict(
        n=2,
        c_in=3,
        c_out=2,
        h=7,
        w=9,
        padding=((1, 1), (1, 1)),
        clamp=None,
        dtype=np.float32,
        seed=1,
    )
)
def test_compiled_winograd_transforms_equal_numpy(case):
    """F(2, 3) with the compiled tile transforms (_winograd_loops: the bias and clamp in the
    output transform, the input read unpadded) against winograd.py's NumPy transforms, forward
    (fused clamp too) and both gradients."""
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"])).astype(dtype)
    weight = rng.standard_normal((case["c_out"], case["c_in"], 3, 3)).astype(dtype)
    bias = rng.standard_normal(case["c_out"]).astype(dtype)

    def run():
        out, cache = conv2d(x, weight, bias, padding=case["padding"], clamp=case["clamp"])
        assert cache.path == "winograd2"
        dout = np.random.default_rng(case["seed"]).standard_normal(out.shape).astype(dtype)
        return (out, *conv2d_backward(dout, cache))

    with patch.dict(os.environ, {"CNNKIT_CONV_PATH": "winograd2"}):
        compiled, reference = both(run)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for ours, theirs in zip(compiled, reference, strict=True):
        assert ours.dtype == dtype and ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


def test_compiled_winograd_reads_a_non_contiguous_input(rng):
    x = rng.standard_normal((2, 3, 9, 12))[:, :, :, ::2]
    weight = rng.standard_normal((4, 3, 3, 3))
    with patch.dict(os.environ, {"CNNKIT_CONV_PATH": "winograd2"}):
        compiled, reference = both(conv2d, x, weight, padding=1)
    assert compiled[1].path == "winograd2"
    np.testing.assert_allclose(compiled[0], reference[0], rtol=1e-12)
