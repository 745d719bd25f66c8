"""ReLU6, Hardtanh, Hardsigmoid, Hardswish, SiLU, GELU, ELU, Softplus, Mish and PReLU against torch.

Hypothesis draws shapes and values (the kinks included: the bounds of the hard functions and 0)
and each layer's arguments; output, dL/dx and PReLU's dL/dslope are compared with torch in
float64 (1e-10) and float32 (rtol 1e-4). Gradchecks run in float64 away from the kinks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit as ck
from cnnkit import nn

torch = pytest.importorskip("torch")
SETTINGS = settings(max_examples=25, deadline=None)
KINKS = [-6.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0, 20.0, -20.0]

LAYERS = {
    "ReLU6": (lambda: nn.ReLU6(), lambda: torch.nn.ReLU6()),
    "Hardtanh": (lambda: nn.Hardtanh(-2.0, 1.5), lambda: torch.nn.Hardtanh(-2.0, 1.5)),
    "Hardsigmoid": (lambda: nn.Hardsigmoid(), lambda: torch.nn.Hardsigmoid()),
    "Hardswish": (lambda: nn.Hardswish(), lambda: torch.nn.Hardswish()),
    "SiLU": (lambda: nn.SiLU(), lambda: torch.nn.SiLU()),
    "GELU": (lambda: nn.GELU(), lambda: torch.nn.GELU()),
    "GELU-tanh": (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU(approximate="tanh")),
    "ELU": (lambda: nn.ELU(0.7), lambda: torch.nn.ELU(0.7)),
    "Softplus": (lambda: nn.Softplus(2.0, 5.0), lambda: torch.nn.Softplus(2.0, 5.0)),
    "Mish": (lambda: nn.Mish(), lambda: torch.nn.Mish()),
}


@st.composite
def inputs(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=4)))
    values = np.asarray(np.random.default_rng(draw(st.integers(0, 2**31))).standard_normal(shape))
    values *= 4
    flat = values.reshape(-1)
    for index in draw(st.lists(st.integers(0, max(flat.size - 1, 0)), max_size=4)):
        flat[index] = draw(st.sampled_from(KINKS))
    return values


def _compare(ours, theirs, x, dtype, rtol, atol):
    x = np.asarray(x, dtype=dtype)
    tx = torch.tensor(x, requires_grad=True)
    reference = theirs(tx)
    upstream = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    (expected_dx,) = torch.autograd.grad(reference, tx, torch.tensor(upstream))
    out = ours(x)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(out, reference.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(ours.backward(upstream), expected_dx.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", LAYERS)
@SETTINGS
@given(x=inputs())
def test_activation_equals_torch_in_float64(name, x):
    ours, theirs = LAYERS[name]
    _compare(ours(), theirs().double(), x, np.float64, 1e-10, 1e-12)


@pytest.mark.parametrize("name", LAYERS)
@SETTINGS
@given(x=inputs())
def test_activation_equals_torch_in_float32(name, x):
    ours, theirs = LAYERS[name]
    _compare(ours(), theirs(), x, np.float32, 1e-4, 1e-5)


@pytest.mark.parametrize("name", LAYERS)
def test_activation_gradcheck_away_from_kinks(name):
    x = np.random.default_rng(0).uniform(-5, 5, (2, 3, 4, 4))
    x[np.abs(x[..., None] - np.array(KINKS)).min(axis=-1) < 0.05] += 0.1
    report = ck.gradcheck(LAYERS[name][0](), x)
    assert report.passed, report


@SETTINGS
@given(
    channels=st.integers(1, 4),
    shared=st.booleans(),
    batch=st.integers(0, 3),
    spatial=st.lists(st.integers(1, 3), max_size=2),
    init=st.floats(-1, 1),
    seed=st.integers(0, 2**31),
)
def test_prelu_equals_torch_with_its_slope_gradient(channels, shared, batch, spatial, init, seed):
    count = 1 if shared else channels
    leading = (batch,) if batch else ()
    if not shared:  # torch reads the channels on axis 1 only
        leading = (max(batch, 1),)
    shape = (*leading, channels, *spatial)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x.reshape(-1)[0] = 0.0
    ours = nn.PReLU(count, init, dtype=np.float64)
    ours.weight.data[:] = rng.uniform(-1, 1, count)
    theirs = torch.nn.PReLU(count, init).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data))
    tx = torch.tensor(x, requires_grad=True)
    reference = theirs(tx)
    upstream = rng.standard_normal(x.shape)
    dx, dweight = torch.autograd.grad(reference, (tx, theirs.weight), torch.tensor(upstream))
    np.testing.assert_allclose(ours(x), reference.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.backward(upstream), dx.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, dweight.numpy(), rtol=1e-10, atol=1e-12)
    assert ours.state_dict().keys() == theirs.state_dict().keys()


def test_prelu_gradcheck_and_accumulation():
    layer = nn.PReLU(3, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    assert ck.gradcheck(layer, x).passed
    layer.zero_grad()
    layer(x)
    layer(x)
    upstream = np.ones_like(x)
    layer.backward(upstream)
    once = layer.weight.grad.copy()
    layer.backward(upstream)
    np.testing.assert_allclose(layer.weight.grad, 2 * once)


def test_inplace_writes_where_torch_does_and_keeps_the_input_where_backward_needs_it():
    x = np.array([-4.0, 0.5, 7.0])
    out = nn.ReLU6(inplace=True)(x)
    assert out is x  # as torch's in-place ReLU6: backward needs only the mask
    np.testing.assert_array_equal(x, [0.0, 0.5, 6.0])
    x = np.array([-4.0, 0.5, 7.0])
    out = nn.Hardswish(inplace=True)(x)
    assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, [-4.0, 0.5, 7.0])
    assert repr(nn.Hardswish(inplace=True)) == "Hardswish(inplace=True)"
    assert repr(nn.Hardtanh(-2.0, 2.0)) == "Hardtanh(min_val=-2.0, max_val=2.0)"


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: nn.Hardtanh(1.0, -1.0), ValueError, "max_val must be greater than min_val"),
        (lambda: nn.Hardtanh("a"), TypeError, "Hardtanh min_val must be a finite number"),
        (lambda: nn.GELU("erf"), ValueError, "GELU approximate must be 'none' or 'tanh'"),
        (lambda: nn.ELU(float("nan")), TypeError, "ELU alpha must be a finite number"),
        (lambda: nn.Softplus(beta=0), ValueError, "Softplus beta must be non-zero"),
        (lambda: nn.PReLU(0), ValueError, "PReLU num_parameters must be at least 1"),
        (lambda: nn.PReLU(2.5), TypeError, "PReLU num_parameters must be an int"),
        (lambda: nn.PReLU(init=None), TypeError, "PReLU init must be a finite number"),
        (
            lambda: nn.PReLU(3)(np.ones((2, 4), np.float32)),
            ValueError,
            "prelu expected input with 3 channels",
        ),
        (lambda: ck.functional.gelu(np.ones(2), "fast"), ValueError, "gelu approximate must be"),
        (lambda: nn.SiLU()(np.ones(2, dtype=np.int64)), TypeError, "SiLU expected input of dtype"),
    ],
)
def test_activation_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()
