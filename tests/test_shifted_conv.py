"""The flat-grid path of stride-1 convolution computes what the im2col path computes.

conv2d sends a dense stride-1 convolution with C_out <= 2 C_in to cnnkit.functional.
_shifted_conv; every other test runs whichever path a shape selects. Here the same inputs go
through both paths (the im2col one forced by switching the selection off), over random shapes,
paddings, dilations and chunk boundaries, and the flat-grid gradients are checked against
central differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnkit.functional import _shifted_conv
from cnnkit.functional._args import pair, resolve_padding
from cnnkit.functional.conv import conv2d, conv2d_backward
from cnnkit.gradcheck import assert_gradcheck


def round_trip(x, weight, bias, dout_seed, **options):
    out, cache = conv2d(x, weight, bias, **options)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(x.dtype)
    dx, dweight, dbias = conv2d_backward(dout, cache)
    return cache.path == "grid", (out, dx, dweight, dbias)


flat_grid_case = st.fixed_dictionaries(
    {
        "n": st.integers(1, 3),
        "c_in": st.integers(1, 6),
        "widening": st.sampled_from([0.5, 1, 2]),
        "h": st.integers(4, 10),
        "w": st.integers(4, 10),
        "kernel": st.sampled_from([(3, 3), (2, 3), (5, 5), (3, 1)]),
        "dilation": st.sampled_from([1, 2, (1, 2)]),
        "padding": st.sampled_from([1, 2, "same", ((1, 0), (2, 1)), ((0, 3), (2, 0))]),
        "bias": st.booleans(),
        "dtype": st.sampled_from([np.float32, np.float64]),
        "seed": st.integers(0, 2**16),
    }
)


@settings(max_examples=60, deadline=None)
@given(case=flat_grid_case)
def test_flat_grid_path_equals_im2col_path(case):
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    c_out = max(1, int(case["c_in"] * case["widening"]))
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"])).astype(dtype)
    weight = rng.standard_normal((c_out, case["c_in"], *case["kernel"])).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype) if case["bias"] else None
    options = dict(padding=case["padding"], dilation=case["dilation"])
    dilation = pair(case["dilation"], "dilation")
    pad = resolve_padding(case["padding"], x.shape[2:], case["kernel"], (1, 1), dilation)
    for axis in range(2):
        extent = dilation[axis] * (case["kernel"][axis] - 1) + 1
        assume(extent <= x.shape[2 + axis] + sum(pad[axis]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_shifted_conv, "CHUNK_BYTES", 1)  # chunks of one grid row each
        took_grid, ours = round_trip(x, weight, bias, case["seed"], **options)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_shifted_conv, "plan", lambda *args: None)
        took_columns, reference = round_trip(x, weight, bias, case["seed"], **options)
    assert not took_columns
    if not took_grid:  # a border that wastes over 2x the arithmetic keeps the im2col path
        return
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for got, expected in zip(ours, reference, strict=True):
        if expected is None:
            assert got is None
            continue
        assert got.dtype == dtype and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 4),
    hw=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    border=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    cut=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    lines=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_cropping_chunk_by_chunk_equals_cropping_the_whole_grid(n, hw, border, cut, lines, seed):
    grid = _shifted_conv.grid_for((n, 2, *hw), (1, 1), ((0, border[0]), (0, border[1])), (1, 1))
    array = np.random.default_rng(seed).standard_normal((3, grid.length))
    kept = (max(1, hw[0] - cut[0]), max(1, hw[1] - cut[1]))
    expected = grid.blocks(array)[:, :, : kept[0], : kept[1]].transpose(1, 0, 2, 3)
    images = np.full((n, 3, *kept), np.nan)
    width = lines * grid.block[1]
    for start in range(0, grid.length, width):
        grid.crop_rows(array[:, start : start + width], start // grid.block[1], images)
    np.testing.assert_array_equal(images, expected)


@pytest.mark.parametrize(
    ("budget", "expected_lines"),
    # a budget of 2 rows x 4 bytes x (the margin of 20 columns + L rows of 9 columns) fits L rows
    [(1, 1), (8 * (20 + 3 * 9), 3), (8 * (20 + 10 * 9), 7), (8 * (20 + 16 * 9), 14)],
)
def test_chunks_are_whole_grid_rows_and_whole_images_where_one_fits(budget, expected_lines):
    grid = _shifted_conv.grid_for((5, 2, 6, 8), (3, 3), ((1, 1), (1, 1)), (1, 1))
    assert grid.block == (7, 9) and grid.margin == 20
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_shifted_conv, "CHUNK_BYTES", budget)
        step, chunks = _shifted_conv._chunks(grid, 2, 4)
    assert step == expected_lines * grid.block[1]
    assert [a for a, _ in chunks] == list(range(0, grid.length, step))
    assert chunks[-1][1] == grid.length


def test_flat_grid_gradients_match_central_differences(rng):
    x = rng.standard_normal((2, 4, 6, 5))
    weight = rng.standard_normal((6, 4, 3, 2))
    bias = rng.standard_normal(6)
    options = dict(padding=((1, 1), (0, 1)), dilation=(1, 2))
    assert conv2d(x, weight, bias, **options)[1].path == "grid"
    assert_gradcheck((lambda *arrays: conv2d(*arrays, **options), conv2d_backward), x, weight, bias)


@pytest.mark.parametrize(
    ("x_shape", "weight_shape", "options", "expected"),
    [
        ((8, 16, 32, 32), (16, 16, 3, 3), {"padding": 1}, True),  # ResNet stage 1
        ((8, 32, 14, 14), (64, 32, 3, 3), {"padding": 1}, True),  # widening 2x
        ((8, 3, 32, 32), (16, 3, 3, 3), {"padding": 1}, False),  # first layer, 5x wider
        ((8, 16, 32, 32), (16, 16, 3, 3), {"padding": 1, "stride": 2}, False),
        ((8, 16, 32, 32), (16, 16, 1, 1), {}, False),  # 1x1: its own GEMM
        ((8, 16, 32, 32), (16, 8, 3, 3), {"padding": 1, "groups": 2}, False),
        ((8, 16, 2, 2), (16, 16, 3, 3), {"padding": 1}, False),  # the grid is 2.25x the output
    ],
)
def test_the_flat_grid_path_is_chosen_by_shape(x_shape, weight_shape, options, expected):
    x = np.zeros(x_shape, dtype=np.float32)
    cache = conv2d(x, np.zeros(weight_shape, dtype=np.float32), **options)[1]
    assert (cache.path == "grid") is expected


def test_flat_grid_results_do_not_share_the_scratch_buffers(rng):
    weight = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    first_x, second_x = rng.standard_normal((2, 2, 8, 7, 7)).astype(np.float32)
    first, first_cache = conv2d(first_x, weight, padding=1)
    first_dx, first_dw, _ = conv2d_backward(np.ones_like(first), first_cache)
    kept = first.copy(), first_dx.copy(), first_dw.copy()
    second, second_cache = conv2d(second_x, weight, padding=1)
    conv2d_backward(2 * np.ones_like(second), second_cache)
    for array, copy in zip((first, first_dx, first_dw), kept, strict=True):
        np.testing.assert_array_equal(array, copy)


def test_flat_grid_backward_takes_a_non_contiguous_upstream_gradient(rng):
    x = rng.standard_normal((3, 8, 6, 6))
    weight = rng.standard_normal((8, 8, 3, 3))
    out, cache = conv2d(x, weight, padding=1)
    dout = rng.standard_normal((6, 6, 8, 3)).transpose(3, 2, 1, 0)
    assert dout.shape == out.shape and not dout.flags.c_contiguous
    got = conv2d_backward(dout, cache)
    expected = conv2d_backward(np.ascontiguousarray(dout), cache)
    for a, b in zip(got[:2], expected[:2], strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_flat_grid_cache_keeps_the_input_itself_and_no_copy_of_it(rng):
    x = rng.standard_normal((2, 8, 6, 6)).astype(np.float32)
    out, cache = conv2d(x, rng.standard_normal((8, 8, 3, 3)).astype(np.float32), padding=1)
    assert cache.path == "grid"
    assert all(part.saved.base is x or part.saved is x for part in cache.parts)
    assert conv2d_backward(np.ones_like(out), cache)[0].shape == (2, 8, 6, 6)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 3),
    hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    padding=st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
    window=st.tuples(st.integers(0, 200), st.integers(1, 120)),
    seed=st.integers(0, 2**16),
)
def test_grid_columns_filled_from_the_images_equal_the_whole_grid(
    n, hw, kernel, padding, window, seed
):
    top, bottom, left, right = padding
    grid = _shifted_conv.grid_for((n, 2, *hw), kernel, ((top, bottom), (left, right)), (1, 1))
    images = np.random.default_rng(seed).standard_normal((n, 2, *hw))
    size = max(grid.lead + grid.length, grid.length + grid.margin)  # every column a pass reads
    whole = grid.place(images, np.empty((2, size)), grid.lead)
    first, count = min(window[0], size - 1), window[1]
    count = min(count, size - first)
    rows, offset = grid.columns_of(images, first, count, "test grid columns")
    np.testing.assert_array_equal(rows[:, offset : offset + count], whole[:, first : first + count])
