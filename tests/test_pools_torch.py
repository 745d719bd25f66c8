"""Pooling layers with every torch argument against torch.nn (float64 to 1e-10, float32 to 1e-4).

Hypothesis draws shapes (odd sizes, H != W, unbatched (C, H, W) inputs) and every option:
MaxPool2d's padding, dilation, ceil_mode and return_indices (with ties, which both break the
same way), AvgPool2d's ceil_mode, count_include_pad and divisor_override, adaptive output sizes
with None entries and bins that overlap or repeat, and MaxUnpool2d after a pool. Each compares
the output, the indices, dL/dx and compute_output_shape; float64 gradient checks and every
error message follow.
"""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit.functional as F
from cnnkit import nn
from cnnkit.functional import _compiled
from cnnkit.gradcheck import assert_gradcheck

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=25, deadline=None)
TOLERANCE = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def close(ours, theirs, dtype, what):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.shape == theirs.shape, f"{what}: {ours.shape} vs torch {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{what}: {ours.dtype} vs torch {theirs.dtype}"
    np.testing.assert_allclose(ours, theirs, err_msg=what, **TOLERANCE[dtype])


def draw_input(draw, dtype, ties: bool):
    """(N, C, H, W) or (C, H, W) values; small integers make max-pool ties common."""
    batched = draw(st.booleans())
    shape = (draw(st.integers(1, 2)),) if batched else ()
    shape += (draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)
    return values.astype(dtype)


def run_torch(module, x):
    """torch's output(s) and dL/dx for the upstream gradient ``dout`` of the first output."""
    xt = torch.tensor(x, requires_grad=True)
    out = module(xt)
    first = out[0] if isinstance(out, tuple) else out
    dout = np.random.default_rng(1).standard_normal(tuple(first.shape)).astype(x.dtype)
    first.backward(torch.tensor(dout))
    return out, dout, xt.grad


def compare(ours, theirs, x, dtype, what):
    """Run both modules on x and compare the outputs, the indices and dL/dx."""
    expected, dout, expected_dx = run_torch(theirs, x)
    out = ours(x)
    if isinstance(expected, tuple):
        (out, indices), (expected, expected_indices) = out, expected
        np.testing.assert_array_equal(indices, expected_indices.numpy(), err_msg=what)
        assert indices.dtype == np.int64
    close(out, expected, dtype, f"{what} output")
    close(ours.backward(dout), expected_dx, dtype, f"{what} dL/dx")
    if x.ndim == 4 and hasattr(ours, "compute_output_shape"):
        assert ours.compute_output_shape(x.shape) == out.shape
    return out


def kernel_and_padding(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    return kernel, stride, padding


def rejected_by_torch(module, x) -> bool:
    """Whether torch refuses ``x`` (a kernel larger than the padded input)."""
    try:
        module(torch.tensor(x))
    except RuntimeError:
        return True
    return False


@st.composite
def max_pool_cases(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    kernel, stride, padding = kernel_and_padding(draw)
    options = dict(
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dilation=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        return_indices=draw(st.booleans()),
        ceil_mode=draw(st.booleans()),
    )
    return options, draw_input(draw, dtype, ties=draw(st.booleans())), dtype, draw(st.booleans())


@SETTINGS
@given(max_pool_cases())
def test_max_pool2d_equals_torch(case):
    options, x, dtype, compiled = case
    ours, theirs = nn.MaxPool2d(**options), torch.nn.MaxPool2d(**options)
    if rejected_by_torch(theirs, x):
        with pytest.raises(ValueError, match="is larger than the padded input"):
            ours(x)
        return
    with patch.object(_compiled, "ENABLED", compiled and _compiled.ENABLED):
        if windows_in_padding_only(options, x.shape):
            compare_windows_in_padding_only(options, x, dtype)
        else:
            compare(ours, theirs, x, dtype, f"MaxPool2d {options} on {x.shape}")


def inside_windows(options, shape):
    """Per axis, whether each max-pool window has a dilated tap inside the input."""
    theirs = torch.nn.MaxPool2d(**dict(options, return_indices=False))
    out_hw = theirs(torch.zeros((1, 1, *shape[-2:]))).shape[-2:]
    inside = []
    for axis in range(2):
        kernel, stride = options["kernel_size"][axis], (options["stride"] or options["kernel_size"])
        taps = stride[axis] * np.arange(out_hw[axis])[:, None] - options["padding"][axis]
        taps = taps + options["dilation"][axis] * np.arange(kernel)[None, :]
        inside.append(((taps >= 0) & (taps < shape[-2 + axis])).any(axis=1))
    return inside


def windows_in_padding_only(options, shape) -> bool:
    return not all(axis.all() for axis in inside_windows(options, shape))


def compare_windows_in_padding_only(options, x, dtype):
    """Dilated windows whose every tap is padding: torch gives -inf and the index its kernel
    starts from (which may lie outside the plane); its backward then writes at that index, out
    of bounds of the gradient (heap corruption), so only its forward pass is the oracle here.
    cnnkit returns the same values and indices and sends those windows no gradient."""
    options = dict(options, return_indices=True)
    expected, expected_indices = torch.nn.MaxPool2d(**options)(torch.tensor(x))
    ours = nn.MaxPool2d(**options)
    out, indices = ours(x)
    np.testing.assert_array_equal(out, expected.numpy())
    np.testing.assert_array_equal(indices, expected_indices.numpy())
    rows, columns = inside_windows(options, x.shape)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    kept = dout * (rows[:, None] & columns[None, :])
    planes = kept.reshape(-1, kept.shape[-2] * kept.shape[-1])
    expected_dx = np.zeros((planes.shape[0], x.shape[-2] * x.shape[-1]), dtype)
    where = np.where(kept != 0, indices, 0).reshape(planes.shape)
    np.add.at(expected_dx, (np.arange(planes.shape[0])[:, None], where), planes)
    close(ours.backward(dout), expected_dx.reshape(x.shape), dtype, "MaxPool2d dL/dx")


def test_dilated_windows_in_the_padding_only_match_torch_forward_and_get_no_gradient():
    """1x1 input, 2-tap windows dilated by 2 from the padding: taps at -1 and 1, both outside."""
    options = dict(kernel_size=(2, 1), stride=(1, 1), padding=(1, 0), dilation=(2, 1))
    assert windows_in_padding_only(options, (1, 1, 1, 1))
    out, indices = nn.MaxPool2d(**options, return_indices=True)(np.ones((1, 1, 1, 1)))
    assert out.ravel().tolist() == [-np.inf] and indices.ravel().tolist() == [1]
    compare_windows_in_padding_only(
        dict(options, ceil_mode=False), np.ones((1, 1, 1, 1)), np.float64
    )


@st.composite
def avg_pool_cases(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    kernel, stride, padding = kernel_and_padding(draw)
    options = dict(
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        ceil_mode=draw(st.booleans()),
        count_include_pad=draw(st.booleans()),
        divisor_override=draw(st.one_of(st.none(), st.integers(-3, 5).filter(bool))),
    )
    return options, draw_input(draw, dtype, ties=False), dtype


@SETTINGS
@given(avg_pool_cases())
def test_avg_pool2d_equals_torch(case):
    options, x, dtype = case
    ours, theirs = nn.AvgPool2d(**options), torch.nn.AvgPool2d(**options)
    if rejected_by_torch(theirs, x):
        with pytest.raises(ValueError, match="is larger than the padded input"):
            ours(x)
        return
    compare(ours, theirs, x, dtype, f"AvgPool2d {options} on {x.shape}")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("size", [5, 6, 7, 8])
def test_avg_pool2d_ceil_mode_windows_past_the_padding(size, count_include_pad, rng):
    """3x3 windows at stride 2 with padding 1: the last ceil_mode window reaches past the
    padding, and torch's divisor counts it up to the padding only (or the input only)."""
    x = rng.standard_normal((2, 3, size, size + 1))
    options = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    ours = nn.AvgPool2d(**options, count_include_pad=count_include_pad)
    theirs = torch.nn.AvgPool2d(**options, count_include_pad=count_include_pad)
    compare(ours, theirs, x, np.float64, "AvgPool2d ceil_mode")


def test_ceil_mode_takes_a_window_larger_than_the_input_as_torch_does(rng):
    """A 5x5 window at stride 5 over a 4x4 input: one output, as in torch (floor mode has none)."""
    x = rng.standard_normal((2, 3, 4, 4))
    for ours, theirs in [
        (nn.AvgPool2d(5, ceil_mode=True), torch.nn.AvgPool2d(5, ceil_mode=True)),
        (nn.MaxPool2d(5, ceil_mode=True), torch.nn.MaxPool2d(5, ceil_mode=True)),
    ]:
        assert compare(ours, theirs, x, np.float64, repr(ours)).shape == (2, 3, 1, 1)


@st.composite
def adaptive_cases(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    size = st.integers(1, 12)
    output_size = draw(
        st.one_of(size, st.tuples(st.one_of(st.none(), size), st.one_of(st.none(), size)))
    )
    return output_size, draw_input(draw, dtype, ties=draw(st.booleans())), dtype


@SETTINGS
@given(adaptive_cases())
def test_adaptive_avg_pool2d_equals_torch(case):
    output_size, x, dtype = case
    ours, theirs = nn.AdaptiveAvgPool2d(output_size), torch.nn.AdaptiveAvgPool2d(output_size)
    compare(ours, theirs, x, dtype, f"AdaptiveAvgPool2d({output_size!r}) on {x.shape}")


@SETTINGS
@given(adaptive_cases(), st.booleans(), st.booleans())
def test_adaptive_max_pool2d_equals_torch(case, return_indices, compiled):
    output_size, x, dtype = case
    ours = nn.AdaptiveMaxPool2d(output_size, return_indices)
    theirs = torch.nn.AdaptiveMaxPool2d(output_size, return_indices)
    with patch.object(_compiled, "ENABLED", compiled and _compiled.ENABLED):
        compare(ours, theirs, x, dtype, f"AdaptiveMaxPool2d({output_size!r}) on {x.shape}")


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: nn.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True),
         lambda: torch.nn.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True)),
        (lambda: nn.MaxPool2d(2, 1, dilation=2, return_indices=True),
         lambda: torch.nn.MaxPool2d(2, 1, dilation=2, return_indices=True)),
        (lambda: nn.AdaptiveMaxPool2d((2, 3), True),
         lambda: torch.nn.AdaptiveMaxPool2d((2, 3), True)),
        (lambda: nn.AdaptiveMaxPool2d((4, 7), True),
         lambda: torch.nn.AdaptiveMaxPool2d((4, 7), True)),
    ],
    ids=["max_pool_ceil", "max_pool_dilated", "adaptive", "adaptive_upsampling"],
)  # fmt: skip
def test_max_pools_route_nan_and_minus_inf_like_torch(ours, theirs, rng):
    """Several NaN in a window (torch keeps the last), and windows of -inf only."""
    x = rng.standard_normal((1, 2, 5, 6))
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = x[0, 0, 3, 4] = np.nan
    x[0, 1, :3, :4] = -np.inf
    for compiled in (True, False):
        with patch.object(_compiled, "ENABLED", compiled and _compiled.ENABLED):
            compare(ours(), theirs(), x, np.float64, f"NaN and -inf, compiled={compiled}")


@st.composite
def unpool_cases(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    hw = (draw(st.integers(3, 9)), draw(st.integers(3, 9)))
    batched = draw(st.booleans())
    shape = ((2,) if batched else ()) + (draw(st.integers(1, 3)), *hw)
    # distinct values: the pool's indices do not depend on how ties break
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(dtype)
    given_size = draw(st.sampled_from(["none", "input", "input4"]))
    return kernel, stride, padding, draw(st.booleans()), x, dtype, given_size


@SETTINGS
@given(unpool_cases())
def test_max_unpool2d_after_max_pool2d_equals_torch(case):
    kernel, stride, padding, ceil_mode, x, dtype, given_size = case
    pool = torch.nn.MaxPool2d(kernel, stride, padding, return_indices=True, ceil_mode=ceil_mode)
    pooled, indices = pool(torch.tensor(x))
    output_size = {"none": None, "input": x.shape[-2:], "input4": (1, 1, *x.shape[-2:])}
    output_size = output_size[given_size]
    if given_size == "input4" and x.ndim == 3:
        output_size = x.shape[-2:]
    ours = nn.MaxUnpool2d(kernel, stride, padding)
    theirs = torch.nn.MaxUnpool2d(kernel, stride, padding)
    ours_pool = nn.MaxPool2d(kernel, stride, padding, return_indices=True, ceil_mode=ceil_mode)
    our_pooled, our_indices = ours_pool(x)
    np.testing.assert_array_equal(our_indices, indices.numpy())
    xt = pooled.detach().clone().requires_grad_(True)
    try:
        expected = theirs(xt, indices, output_size)
    except (RuntimeError, ValueError) as error:  # indices past the end, or a size out of range
        match = "invalid max index" if isinstance(error, RuntimeError) else "output_size"
        with pytest.raises(ValueError, match=f"^max_unpool2d.*{match}"):
            ours(our_pooled, our_indices, output_size)
        return
    dout = np.random.default_rng(2).standard_normal(tuple(expected.shape)).astype(dtype)
    expected.backward(torch.tensor(dout))
    out = ours(our_pooled, our_indices, output_size)
    close(out, expected, dtype, "MaxUnpool2d output")
    close(ours.backward(dout), xt.grad, dtype, "MaxUnpool2d dL/dx")
    if output_size is not None:
        kept = out != 0
        np.testing.assert_array_equal(out[kept], x[kept])  # the maxima go back where they were


def distinct(rng, shape):
    """Float64 values at least 0.01 apart: a central difference never changes a maximum."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + rng.uniform(0, 0.001)


@pytest.mark.parametrize(
    "options",
    [
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True),
        dict(kernel_size=2, dilation=2, padding=1),
    ],
)
def test_max_pool2d_gradcheck(options, rng):
    x = distinct(rng, (2, 2, 7, 6))
    assert_gradcheck(nn.MaxPool2d(**options), x)
    indexed = nn.MaxPool2d(**options, return_indices=True)
    assert_gradcheck((lambda a: (indexed(a)[0], None), lambda d, _: indexed.backward(d)), x)


@pytest.mark.parametrize(
    "options",
    [
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        dict(kernel_size=(2, 3), stride=(3, 1), padding=(1, 0), divisor_override=2),
    ],
)
def test_avg_pool2d_gradcheck(options, rng):
    assert_gradcheck(nn.AvgPool2d(**options), rng.standard_normal((2, 2, 6, 7)))


@pytest.mark.parametrize("output_size", [(3, 4), (4, None), 7, (1, 2)])
def test_adaptive_pools_gradcheck(output_size, rng):
    x = distinct(rng, (2, 2, 5, 6))
    assert_gradcheck(nn.AdaptiveAvgPool2d(output_size), x)
    assert_gradcheck(nn.AdaptiveMaxPool2d(output_size), x)


def test_max_unpool2d_gradcheck(rng):
    x = distinct(rng, (2, 2, 7, 6))
    # windows that do not overlap: with a repeated index the last write wins and the earlier
    # value has no effect, which the gather of torch's backward (and ours) does not model
    pooled, indices = nn.MaxPool2d((2, 3), (2, 3), 1, return_indices=True)(x)
    unpool = nn.MaxUnpool2d((2, 3), (2, 3), 1)
    assert_gradcheck(
        (lambda a: (unpool(a, indices, x.shape), None), lambda d, _: unpool.backward(d)), pooled
    )


def test_unbatched_return_indices_lose_the_batch_axis(rng):
    x = rng.standard_normal((3, 7, 7))
    pool = nn.MaxPool2d(3, 2, 1, return_indices=True)
    out, indices = pool(x)
    assert out.shape == indices.shape == (3, 4, 4)
    dx = pool.backward(np.ones_like(out))
    assert dx.shape == x.shape
    assert nn.MaxUnpool2d(3, 2, 1)(out, indices, (7, 7)).shape == x.shape


def test_reprs_name_every_argument():
    assert repr(nn.MaxPool2d(3, 2, 1, 2, True, True)) == (
        "MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2), "
        "ceil_mode=True, return_indices=True)"
    )
    assert repr(nn.AvgPool2d(2, ceil_mode=True, divisor_override=3)) == (
        "AvgPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=True, "
        "count_include_pad=True, divisor_override=3)"
    )
    assert (
        repr(nn.MaxUnpool2d(2)) == "MaxUnpool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    )
    assert repr(nn.AdaptiveMaxPool2d((3, None), True)) == (
        "AdaptiveMaxPool2d(output_size=(3, None), return_indices=True)"
    )


X = np.zeros((1, 2, 4, 4))
INDICES = np.zeros((1, 2, 2, 2), np.int64)

ERRORS = [
    ("dilation_zero", lambda: nn.MaxPool2d(2, dilation=0), ValueError,
     r"^dilation must be >= 1, got 0$"),
    ("ceil_mode_not_bool", lambda: nn.MaxPool2d(2, ceil_mode="yes"), TypeError,
     r"^MaxPool2d ceil_mode must be a bool, got 'yes'$"),
    ("return_indices_not_bool", lambda: nn.MaxPool2d(2, return_indices=1), TypeError,
     r"^MaxPool2d return_indices must be a bool, got 1$"),
    ("functional_ceil_mode_not_bool", lambda: F.max_pool2d(X, 2, ceil_mode=None), TypeError,
     r"^max_pool2d ceil_mode must be a bool, got None$"),
    ("max_pool_padding_dilated", lambda: nn.MaxPool2d(3, padding=2, dilation=2), ValueError,
     r"^MaxPool2d padding \(2, 2\) must be at most half the kernel size \(3, 3\)$"),
    ("dilated_kernel_too_large", lambda: nn.MaxPool2d(3, dilation=2)(X), ValueError,
     r"^max_pool2d dilated kernel \(5, 5\) is larger than the padded input \(4, 4\) "
     r"\(input shape \(1, 2, 4, 4\)\)$"),
    ("ceil_kernel_too_large", lambda: nn.AvgPool2d(5, 1, ceil_mode=True)(X), ValueError,
     r"^avg_pool2d kernel \(5, 5\) is larger than the padded input \(4, 4\)"),
    ("avg_padding", lambda: nn.AvgPool2d(2, padding=(0, 2)), ValueError,
     r"^AvgPool2d padding \(0, 2\) must be at most half the kernel size \(2, 2\)$"),
    ("count_include_pad_not_bool", lambda: nn.AvgPool2d(2, count_include_pad=None), TypeError,
     r"^AvgPool2d count_include_pad must be a bool, got None$"),
    ("divisor_zero", lambda: nn.AvgPool2d(2, divisor_override=0), ValueError,
     r"^divisor_override must not be zero, got 0$"),
    ("divisor_float", lambda: F.avg_pool2d(X, 2, divisor_override=1.5), TypeError,
     r"^divisor_override must be an int or None, got 1.5$"),
    ("adaptive_max_zero", lambda: nn.AdaptiveMaxPool2d((3, 0)), ValueError,
     r"^AdaptiveMaxPool2d output_size must be >= 1, got \(3, 0\)$"),
    ("adaptive_negative", lambda: F.adaptive_avg_pool2d(X, -1), ValueError,
     r"^adaptive_avg_pool2d output_size must be >= 1, got -1$"),
    ("adaptive_string", lambda: nn.AdaptiveAvgPool2d((3, "a")), TypeError,
     r"^AdaptiveAvgPool2d output_size must be an int or a pair of ints or None, got \(3, 'a'\)$"),
    ("adaptive_triple", lambda: F.adaptive_max_pool2d(X, (1, 2, 3)), TypeError,
     r"^adaptive_max_pool2d output_size must be an int or a pair of ints or None, "
     r"got \(1, 2, 3\)$"),
    ("adaptive_return_indices_not_bool", lambda: nn.AdaptiveMaxPool2d(2, "no"), TypeError,
     r"^AdaptiveMaxPool2d return_indices must be a bool, got 'no'$"),
    ("adaptive_max_2d_input", lambda: nn.AdaptiveMaxPool2d(2)(np.zeros((4, 4))), ValueError,
     r"^adaptive_max_pool2d expected 4-D input \(N, C, H, W\), got shape \(4, 4\)$"),
    ("unpool_index_too_large", lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES + 16),
     ValueError, r"^max_unpool2d found an invalid max index 16 \(output planes are 4x4\)$"),
    ("unpool_negative_index", lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES - 1),
     ValueError, r"^max_unpool2d found an invalid max index -1 \(output planes are 4x4\)$"),
    ("unpool_indices_shape", lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES[..., :1]),
     ValueError, r"^max_unpool2d expected indices of the input's shape \(1, 2, 2, 2\), "
     r"got \(1, 2, 2, 1\)$"),
    ("unpool_float_indices", lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES * 1.0),
     TypeError, r"^max_unpool2d expected integer indices \(numpy.ndarray\), got float64$"),
    ("unpool_list_indices", lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], [0]),
     TypeError, r"^max_unpool2d expected integer indices \(numpy.ndarray\), got list$"),
    ("unpool_output_size_length", lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES, (1, 4, 4)),
     ValueError, r"^max_unpool2d output_size must have 2 or 4 entries, got \(1, 4, 4\)$"),
    ("unpool_output_size_range", lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES, (6, 4)),
     ValueError, r"^max_unpool2d output_size \(6, 4\) is invalid: dimension 0 must be strictly "
     r"between 2 and 6$"),
    ("unpool_output_size_type", lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES, 4),
     TypeError, r"^max_unpool2d output_size must be a sequence of ints, got 4$"),
    ("unpool_negative_size",
     lambda: nn.MaxUnpool2d(2, padding=2)(X[:, :, :1, :1], INDICES[..., :1, :1]),
     ValueError, r"^max_unpool2d output size \(-2, -2\) must not be negative$"),
    ("unpool_padding_negative", lambda: nn.MaxUnpool2d(2, padding=-1), ValueError,
     r"^padding must be >= 0, got -1$"),
]  # fmt: skip


@pytest.mark.parametrize(
    "make, error, message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error_messages(make, error, message):
    with pytest.raises(error, match=message):
        make()


def t(array):
    return torch.tensor(array)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: nn.MaxPool2d(2, dilation=0), lambda: torch.nn.MaxPool2d(2, dilation=0)(t(X))),
        (lambda: nn.MaxPool2d(3, padding=2, dilation=2),
         lambda: torch.nn.MaxPool2d(3, padding=2, dilation=2)(t(X))),
        (lambda: nn.MaxPool2d(3, dilation=2)(X), lambda: torch.nn.MaxPool2d(3, dilation=2)(t(X))),
        (lambda: nn.AvgPool2d(5, 1, ceil_mode=True)(X),
         lambda: torch.nn.AvgPool2d(5, 1, ceil_mode=True)(t(X))),
        (lambda: nn.AvgPool2d(2, padding=(0, 2)),
         lambda: torch.nn.AvgPool2d(2, padding=(0, 2))(t(X))),
        (lambda: nn.AvgPool2d(2, divisor_override=0),
         lambda: torch.nn.AvgPool2d(2, divisor_override=0)(t(X))),
        (lambda: F.avg_pool2d(X, 2, divisor_override=1.5),
         lambda: torch.nn.functional.avg_pool2d(t(X), 2, divisor_override=1.5)),
        (lambda: F.adaptive_avg_pool2d(X, -1),
         lambda: torch.nn.functional.adaptive_avg_pool2d(t(X), -1)),
        (lambda: F.adaptive_max_pool2d(X, (1, 2, 3)),
         lambda: torch.nn.functional.adaptive_max_pool2d(t(X), (1, 2, 3))),
        (lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES + 16),
         lambda: torch.nn.MaxUnpool2d(2)(t(X[:, :, :2, :2]), t(INDICES + 16))),
        (lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES[..., :1]),
         lambda: torch.nn.MaxUnpool2d(2)(t(X[:, :, :2, :2]), t(INDICES[..., :1]))),
        (lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES * 1.0),
         lambda: torch.nn.MaxUnpool2d(2)(t(X[:, :, :2, :2]), t(INDICES * 1.0))),
        (lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES, (1, 4, 4)),
         lambda: torch.nn.MaxUnpool2d(2)(t(X[:, :, :2, :2]), t(INDICES), (1, 4, 4))),
        (lambda: nn.MaxUnpool2d(2)(X[:, :, :2, :2], INDICES, (6, 4)),
         lambda: torch.nn.MaxUnpool2d(2)(t(X[:, :, :2, :2]), t(INDICES), (6, 4))),
    ],
)  # fmt: skip
def test_what_we_reject_torch_rejects_too(ours, theirs):
    with pytest.raises((ValueError, TypeError)):
        ours()
    with pytest.raises((ValueError, TypeError, RuntimeError)):
        theirs()
