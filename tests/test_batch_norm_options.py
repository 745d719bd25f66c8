"""BatchNorm1d/2d with torch's options: momentum=None, affine, bias, track_running_stats, empty
batches, and torch's lenient load_state_dict for num_batches_tracked."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import nn

torch = pytest.importorskip("torch")


@settings(max_examples=25, deadline=None)
@given(
    two_d=st.booleans(),
    momentum=st.sampled_from([None, 0.0, 0.1, 0.5, 1.0]),
    affine=st.booleans(),
    bias=st.booleans(),
    track=st.booleans(),
    steps=st.integers(1, 3),
    seed=st.integers(0, 2**31),
)
def test_batch_norm_options_equal_torch(two_d, momentum, affine, bias, track, steps, seed):
    rng = np.random.default_rng(seed)
    shape = (3, 2, 4, 3) if two_d else (4, 2, 5)
    kind = "BatchNorm2d" if two_d else "BatchNorm1d"
    options = {"momentum": momentum, "affine": affine, "track_running_stats": track, "bias": bias}
    ours = getattr(nn, kind)(2, dtype=np.float64, **options)
    theirs = getattr(torch.nn, kind)(2, **options).double()
    if affine:
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            if bias:
                theirs.bias.uniform_(-1, 1)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for training in [True] * steps + [False]:
        ours.train(training)
        theirs.train(training)
        x = rng.standard_normal(shape) * 2 + 1
        tx = torch.tensor(x, requires_grad=True)
        reference = theirs(tx)
        upstream = rng.standard_normal(shape)
        leaves = [tx, *theirs.parameters()]
        grads = torch.autograd.grad(reference, leaves, torch.tensor(upstream))
        ours.zero_grad()
        np.testing.assert_allclose(ours(x), reference.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.backward(upstream), grads[0].numpy(), rtol=1e-9, atol=1e-11)
        for (name, parameter), grad in zip(ours.named_parameters(), grads[1:], strict=True):
            np.testing.assert_allclose(parameter.grad, grad.numpy(), rtol=1e-9, err_msg=name)
        for name, buffer in theirs.named_buffers():
            np.testing.assert_allclose(ours.state_dict()[name], buffer.numpy(), err_msg=name)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_empty_batch_counts_a_batch_and_changes_no_statistic():
    layer = nn.BatchNorm2d(3)
    out = layer(np.zeros((0, 3, 4, 4), np.float32))
    assert out.shape == (0, 3, 4, 4)
    assert layer.backward(np.zeros_like(out)).shape == (0, 3, 4, 4)
    state = layer.state_dict()
    assert int(state["num_batches_tracked"]) == 1
    np.testing.assert_array_equal(state["running_mean"], 0)
    np.testing.assert_array_equal(state["running_var"], 1)
    np.testing.assert_array_equal(layer.weight.grad, 0)


def test_plain_dict_may_leave_out_num_batches_tracked_but_a_torch_state_dict_may_not():
    layer = nn.BatchNorm2d(3)
    layer._buffers["num_batches_tracked"][...] = 7
    torch_state = torch.nn.BatchNorm2d(3).state_dict()
    del torch_state["num_batches_tracked"]
    plain = {k: v.numpy() for k, v in torch_state.items()}
    layer.load_state_dict(plain)
    assert int(layer.state_dict()["num_batches_tracked"]) == 7

    class Versioned(dict):
        _metadata = torch_state._metadata

    with pytest.raises(ValueError, match=r"missing \['num_batches_tracked'\]"):
        layer.load_state_dict(Versioned(plain))
    with pytest.raises(ValueError, match=r"missing \['running_mean'\]"):
        layer.load_state_dict({k: v for k, v in plain.items() if k != "running_mean"})


def test_bias_false_learns_the_scale_only():
    layer = nn.BatchNorm2d(2, bias=False)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]


def test_momentum_error_names_the_option():
    with pytest.raises(ValueError, match="BatchNorm2d momentum must be in"):
        nn.BatchNorm2d(2, momentum=1.5)
