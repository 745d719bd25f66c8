"""Training steps of a small CNN in cnnkit and in torch from identical initial weights.

conv - batch norm - ReLU - max pool - conv - ReLU - flatten - linear, softmax cross-entropy on
integer labels; SGD with momentum (and Nesterov, weight decay) and Adam. The losses, the updated
weights and the batch-norm running statistics agree after every step (float32 to rtol 1e-4).
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit.nn as nn
import cnnkit.optim as optim

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")
tnn = torch.nn

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
TOL = {
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-6},
    np.dtype(np.float64): {"rtol": 1e-9, "atol": 1e-12},
}
BATCH, CLASSES = 8, 5


def models(dtype, seed):
    ours = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False, dtype=dtype),
        nn.BatchNorm2d(6, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 4, 3, stride=2, padding=1, dtype=dtype),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, CLASSES, dtype=dtype),
    )
    torch.manual_seed(seed)
    theirs = tnn.Sequential(
        tnn.Conv2d(3, 6, 3, padding=1, bias=False),
        tnn.BatchNorm2d(6),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Conv2d(6, 4, 3, stride=2, padding=1),
        tnn.ReLU(),
        tnn.Flatten(),
        tnn.Linear(4 * 2 * 2, CLASSES),
    ).to(TORCH_DTYPE[np.dtype(dtype)])
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


OPTIMIZERS = {
    "sgd_momentum": (
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    ),
    "sgd_nesterov_weight_decay": (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.8, weight_decay=1e-3, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, weight_decay=1e-3, nesterov=True),
    ),
    "adam": (
        lambda p: optim.Adam(p, lr=1e-2, betas=(0.9, 0.99)),
        lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.9, 0.99)),
    ),
    "adam_weight_decay": (
        lambda p: optim.Adam(p, lr=3e-3, weight_decay=1e-2),
        lambda p: torch.optim.Adam(p, lr=3e-3, weight_decay=1e-2),
    ),
}


def assert_same_state(ours, theirs, dtype, what):
    theirs_state = theirs.state_dict()
    ours_state = ours.state_dict()
    assert list(ours_state) == list(theirs_state)
    for key, value in theirs_state.items():
        expected = value.numpy()
        tolerance = TOL.get(ours_state[key].dtype, {"rtol": 0, "atol": 0})
        np.testing.assert_allclose(ours_state[key], expected, err_msg=f"{what}: {key}", **tolerance)
        assert ours_state[key].dtype == expected.dtype, key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_training_steps_match_torch(name, dtype):
    make_ours, make_theirs = OPTIMIZERS[name]
    ours, theirs = models(dtype, seed=0)
    opt, opt_t = make_ours(ours.parameters()), make_theirs(theirs.parameters())
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(1)
    initial = ours.state_dict()
    for step in range(3):  # the first step alone equals plain SGD; later ones use the state
        x = rng.standard_normal((BATCH, 3, 8, 8)).astype(dtype)
        labels = rng.integers(0, CLASSES, BATCH)

        opt.zero_grad()
        loss = loss_fn(ours(x), labels)
        ours.backward(loss_fn.backward())
        opt.step()

        opt_t.zero_grad()
        loss_t = tnn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(labels))
        loss_t.backward()
        opt_t.step()

        np.testing.assert_allclose(
            loss, loss_t.item(), err_msg=f"step {step} loss", **TOL[np.dtype(dtype)]
        )
        assert_same_state(ours, theirs, dtype, f"{name} after step {step}")
    # the weights did move, so agreeing is not trivial
    moved = ours.state_dict()
    assert not np.allclose(moved["0.weight"], initial["0.weight"])
    assert not np.allclose(moved["7.weight"], initial["7.weight"])
    # and eval mode agrees after training
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((BATCH, 3, 8, 8)).astype(dtype)
    with torch.no_grad():
        expected = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours(x), expected, **TOL[np.dtype(dtype)])
