"""A module called several times in one pass, and torch's unbatched input forms."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import nn

torch = pytest.importorskip("torch")


def _copy_to_torch(module, torch_module):
    torch_module.load_state_dict(
        {k: torch.from_numpy(v) for k, v in module.state_dict().items()}, strict=True
    )


def test_shared_encoder_accumulates_both_calls_like_autograd(rng, torch_single_thread):
    encoder = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=rng),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 5 * 5, 4, dtype=np.float64, rng=rng),
    )
    a, b = rng.standard_normal((2, 3, 2, 5, 5))
    ya, yb = encoder(a), encoder(b)
    dya, dyb = rng.standard_normal((2, *ya.shape))
    dxb = encoder.backward(dyb)
    dxa = encoder.backward(dya)

    reference = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(75, 4),
    ).double()
    _copy_to_torch(encoder, reference)
    ta = torch.from_numpy(a).requires_grad_()
    tb = torch.from_numpy(b).requires_grad_()
    tya, tyb = reference(ta), reference(tb)
    ((tya * torch.from_numpy(dya)).sum() + (tyb * torch.from_numpy(dyb)).sum()).backward()

    np.testing.assert_allclose(ya, tya.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(yb, tyb.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(dxa, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dxb, tb.grad.numpy(), rtol=1e-10, atol=1e-12)
    for (name, p), (_, tp) in zip(encoder.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_backward_pops_calls_newest_first(rng):
    relu = nn.ReLU()
    x1 = np.array([1.0, -1.0])
    x2 = np.array([-1.0, 1.0])
    relu(x1)
    relu(x2)
    np.testing.assert_array_equal(relu.backward(np.ones(2)), [0.0, 1.0])
    np.testing.assert_array_equal(relu.backward(np.ones(2)), [1.0, 0.0])
    with pytest.raises(RuntimeError, match=r"^ReLU\.backward called before forward$"):
        relu.backward(np.ones(2))


def test_no_grad_forward_leaves_pending_caches_alone():
    relu = nn.ReLU()
    relu(np.array([1.0, -1.0]))
    with ck.no_grad():
        relu(np.array([-1.0, 1.0]))
    np.testing.assert_array_equal(relu.backward(np.ones(2)), [1.0, 0.0])


def test_backward_beyond_the_kept_calls_says_they_were_dropped():
    relu = nn.ReLU()
    calls = relu.max_cached_calls + 1
    for _ in range(calls):
        relu(np.ones(3))
    for _ in range(calls - 1):
        relu.backward(np.ones(3))
    with pytest.raises(
        RuntimeError,
        match=r"^ReLU\.backward reached a forward call whose cache was dropped: more than 64 "
        r"forward calls were made without backward \(run forward passes that need no backward "
        r"under cnnkit\.no_grad\(\)\)$",
    ):
        relu.backward(np.ones(3))


@pytest.mark.parametrize(
    ("make", "make_torch", "shape"),
    [
        (
            lambda: nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64),
            lambda: torch.nn.Conv2d(2, 3, 3, padding=1),
            (2, 6, 5),
        ),
        (lambda: nn.Linear(4, 3, dtype=np.float64), lambda: torch.nn.Linear(4, 3), (4,)),
        (lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2), (2, 6, 4)),
        (lambda: nn.AvgPool2d(2), lambda: torch.nn.AvgPool2d(2), (2, 6, 4)),
        (lambda: nn.AdaptiveAvgPool2d(2), lambda: torch.nn.AdaptiveAvgPool2d(2), (2, 6, 5)),
    ],
    ids=["Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"],
)
def test_unbatched_input_equals_torch(make, make_torch, shape, rng, torch_single_thread):
    layer, reference = make(), make_torch().double()
    _copy_to_torch(layer, reference)
    x = rng.standard_normal(shape)
    out = layer(x)
    tx = torch.from_numpy(x).requires_grad_()
    tout = reference(tx)
    dout = rng.standard_normal(out.shape)
    tout.backward(torch.from_numpy(dout))
    assert out.shape == tuple(tout.shape)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.backward(dout), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(
            p.grad, reference.get_parameter(name).grad.numpy(), rtol=1e-10, atol=1e-12
        )
