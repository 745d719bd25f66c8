"""gradcheck itself: it passes correct backward passes, fails wrong ones, and reports where."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit as ck
from cnnkit.functional import relu, relu_backward
from cnnkit.gradcheck import assert_gradcheck, gradcheck


def test_dropout_in_training_mode_is_checked_with_a_fixed_mask(rng):
    model = ck.nn.Sequential(
        ck.nn.Linear(6, 5, dtype=np.float64, rng=rng),
        ck.nn.Dropout(0.5, rng=np.random.default_rng(1)),
        ck.nn.Tanh(),
    ).train()
    report = assert_gradcheck(model, rng.standard_normal((4, 6)))
    assert report.checked == 4 * 6 + 5 * 6 + 5


def test_a_wrong_gradient_is_reported_with_its_location(rng):
    def doubled_backward(dout, cache):
        return 2 * relu_backward(dout, cache)

    x = rng.standard_normal((3, 4)) + 0.5
    report = gradcheck((relu, doubled_backward), x)
    assert not report.passed
    assert report.max_rel_error == pytest.approx(0.5, rel=1e-6)
    assert report.where.startswith("input 0[")
    with pytest.raises(AssertionError, match=r"gradcheck FAILED: worst relative error 5\.0+e-01"):
        assert_gradcheck((relu, doubled_backward), x)


def test_float32_is_refused(rng):
    layer = ck.nn.Linear(3, 2, rng=rng)
    with pytest.raises(
        TypeError, match="gradcheck needs float64 arrays, got input 0 of dtype float32"
    ):
        gradcheck(layer, rng.standard_normal((2, 3)).astype(np.float32))


def test_module_takes_exactly_one_input(rng):
    layer = ck.nn.Linear(3, 2, dtype=np.float64, rng=rng)
    x = rng.standard_normal((2, 3))
    with pytest.raises(ValueError, match="gradcheck of a Module takes exactly one input, got 2"):
        gradcheck(layer, x, x)
