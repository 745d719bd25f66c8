"""Dropout2d: whole channels dropped, the rest scaled by 1/(1-p), the same mask in backward."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import nn

torch = pytest.importorskip("torch")


@settings(max_examples=25, deadline=None)
@given(
    shape=st.sampled_from([(2, 3, 4, 5), (6, 2, 3), (1, 8, 1, 1)]),
    p=st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]),
    seed=st.integers(0, 2**31),
)
def test_dropout2d_drops_whole_channels_and_backward_uses_the_mask(shape, p, seed):
    """A 3-D input is (N, C, L) as in torch 2.13: slices x[n, c] are dropped whole."""
    x = np.random.default_rng(seed).uniform(0.5, 1.5, shape)
    layer = nn.Dropout2d(p, rng=np.random.default_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's warning about a 3-D input, checked elsewhere
        out = layer(x)
    planes = out.reshape(shape[0] * shape[1], -1)
    kept = planes[:, 0] != 0
    expected = x.reshape(planes.shape) / (1 - p) if p < 1 else np.zeros_like(planes)
    np.testing.assert_allclose(planes[kept], expected[kept])
    np.testing.assert_array_equal(planes[~kept], 0)
    upstream = np.ones_like(x)
    np.testing.assert_allclose(layer.backward(upstream), out / np.where(x == 0, 1, x))
    layer.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(layer(x), x)


def test_dropout2d_keeps_about_one_minus_p_of_the_channels_as_torch():
    x = np.ones((64, 64, 2, 2), np.float32)
    ours = nn.Dropout2d(0.3, rng=np.random.default_rng(0))(x)
    theirs = torch.nn.Dropout2d(0.3)(torch.from_numpy(x)).numpy()
    for out in (ours, theirs):
        kept = (out[:, :, 0, 0] != 0).mean()
        assert abs(kept - 0.7) < 0.03
        np.testing.assert_allclose(out[out != 0], 1 / 0.7, rtol=1e-6)
        assert (out.min(axis=(2, 3)) == out.max(axis=(2, 3))).all()  # one value per channel


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: nn.Dropout2d(1.5), r"Dropout2d probability p must be in \[0, 1\]"),
        (
            lambda: nn.Dropout2d()(np.ones((2, 3), np.float32)),
            r"Dropout2d expected \(N, C, H, W\) or \(N, C, L\) input, got \(2, 3\)",
        ),
    ],
)
def test_dropout2d_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()
