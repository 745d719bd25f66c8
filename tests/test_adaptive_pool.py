"""AdaptiveAvgPool2d and AdaptiveMaxPool2d against torch: output sizes with None, return_indices,
overlapping bins, unbatched input, forward and input gradient in float64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import nn

torch = pytest.importorskip("torch")

sizes = st.one_of(
    st.integers(1, 5), st.tuples(st.one_of(st.none(), st.integers(1, 5)), st.integers(1, 5))
)


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(["AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]),
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)),
    output_size=sizes,
    unbatched=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_adaptive_pool_equals_torch(kind, shape, output_size, unbatched, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape[1:] if unbatched else shape)
    options = {"return_indices": True} if kind == "AdaptiveMaxPool2d" else {}
    ours, theirs = (
        getattr(nn, kind)(output_size, **options),
        getattr(torch.nn, kind)(output_size, **options),
    )
    tx = torch.tensor(x, requires_grad=True)
    reference = theirs(tx)
    out = ours(x)
    if options:
        (reference, reference_indices), (out, indices) = reference, out
        np.testing.assert_array_equal(indices, reference_indices.numpy())
    np.testing.assert_allclose(out, reference.detach().numpy(), rtol=1e-12)
    upstream = rng.standard_normal(out.shape)
    (dx,) = torch.autograd.grad(reference, tx, torch.tensor(upstream))
    np.testing.assert_allclose(ours.backward(upstream), dx.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d"])
def test_adaptive_pool_errors(kind):
    with pytest.raises(ValueError, match=r"output_size must be >= 1, got \(0, 2\)"):
        getattr(nn, kind)((0, 2))
    with pytest.raises(TypeError, match="output_size must be an int or a pair of ints"):
        getattr(nn, kind)("big")
