"""The grid path's kernel-row matrix is cached in inference and never goes stale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from checks import record_calls
from threadpoolctl import threadpool_limits

import cnnkit
from cnnkit.functional import _parallel, _shifted_conv, _weight_cache, winograd
from cnnkit.functional.conv import conv2d


def torch_conv(x, weight):
    return torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(weight), padding=1).numpy()


def test_grid_layout_is_reused_until_the_weight_changes_in_place(rng, monkeypatch):
    monkeypatch.setenv("CNNKIT_CONV_PATH", "grid")
    _weight_cache.CACHE.clear()
    calls = record_calls(monkeypatch, _shifted_conv, "_by_kernel_row")
    x, weight = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    with cnnkit.no_grad():
        first, _ = conv2d(x, weight, padding=1)
        again, _ = conv2d(x, weight, padding=1)
        assert len(calls) == 1
        np.testing.assert_array_equal(first, again)
        weight[1] += 1.0  # an optimizer's in-place step: same address, new bits
        updated, _ = conv2d(x, weight, padding=1)
        assert len(calls) == 2
    np.testing.assert_allclose(updated, torch_conv(x, weight), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("path", "module", "layout"),
    [("grid", _shifted_conv, "_by_kernel_row"), ("winograd2", winograd, "weight_transform")],
)
def test_training_makes_the_layout_every_call(rng, monkeypatch, path, module, layout):
    monkeypatch.setenv("CNNKIT_CONV_PATH", path)
    calls = record_calls(monkeypatch, module, layout)
    x, weight = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 2, 3, 3))
    conv2d(x, weight, padding=1)
    conv2d(x, weight, padding=1)
    assert len(calls) == 2


def test_purposes_do_not_share_entries(rng):
    _weight_cache.CACHE.clear()
    weight = rng.standard_normal((2, 2, 3, 3))
    with cnnkit.no_grad():
        doubled = _weight_cache.layout(weight, "double", lambda w: 2 * w)
        negated = _weight_cache.layout(weight, "negate", lambda w: -w)
    np.testing.assert_array_equal(doubled, 2 * weight)
    np.testing.assert_array_equal(negated, -weight)


def test_threads_splitting_a_batch_make_one_layout(rng, monkeypatch):
    monkeypatch.setenv("CNNKIT_CONV_PATH", "grid")
    monkeypatch.setattr(_parallel, "MIN_PART_BYTES", 1)
    _weight_cache.CACHE.clear()
    calls = record_calls(monkeypatch, _shifted_conv, "_by_kernel_row")
    x, weight = rng.standard_normal((4, 3, 6, 6)), rng.standard_normal((5, 3, 3, 3))
    with cnnkit.no_grad(), threadpool_limits(2, "blas"):
        out, cache = conv2d(x, weight, padding=1)
    assert len(cache.parts) == 2 and len(calls) == 1
    np.testing.assert_allclose(out, torch_conv(x, weight), rtol=1e-10, atol=1e-12)
