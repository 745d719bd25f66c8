"""Normalisation layers against torch.nn on random shapes and every constructor option.

BatchNorm1d/2d, InstanceNorm1d/2d, GroupNorm and LayerNorm: hypothesis draws shapes, options,
dtype and mode; the torch module gets random weights and running statistics, copied into cnnkit
through load_state_dict. A few training steps (new input each) compare the output, dL/dx and
every parameter gradient; the buffers are compared afterwards, then an eval step. Then float64
gradient checks, state dicts, reprs and every error message.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnkit.functional as F
import cnnkit.nn as nn
from cnnkit.gradcheck import assert_gradcheck

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=25, deadline=None)
DTYPES = st.sampled_from([np.float64, np.float32])
TORCH_DTYPE = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}
TOL = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-10},
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-4},
}


def build(name: str, args: tuple, kwargs: dict, dtype, seed: int):
    """(cnnkit module, torch module) with the same random weights and running statistics."""
    theirs = getattr(torch.nn, name)(*args, **kwargs).to(TORCH_DTYPE[np.dtype(dtype)])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
        for bname, b in theirs.named_buffers():
            if bname == "running_mean":
                b.copy_(torch.randn(b.shape, generator=generator, dtype=b.dtype))
            elif bname == "running_var":
                b.copy_(torch.rand(b.shape, generator=generator, dtype=b.dtype) + 0.5)
            else:
                b.fill_(seed % 3)
    ours = getattr(nn, name)(*args, **kwargs, dtype=dtype)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def check(ours, theirs, dtype, what: str, truth=None) -> None:
    """ours equals torch's result ``theirs``: in float64 to 1e-10; in float32 to rtol 1e-4, or
    else no further from torch's float64 result ``truth`` than 4x torch's own float32 error
    (groups of nearly equal values make normalisation ill-conditioned in float32)."""
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, torch {theirs.shape}"
    if not np.issubdtype(theirs.dtype, np.floating):
        np.testing.assert_array_equal(ours, theirs, err_msg=what)
        return
    assert ours.dtype == np.dtype(dtype), f"{what}: dtype {ours.dtype}"
    tolerance = TOL[np.dtype(dtype)]
    if truth is None:
        np.testing.assert_allclose(ours, theirs, err_msg=what, **tolerance)
        return
    truth = truth.detach().numpy() if isinstance(truth, torch.Tensor) else truth
    allowed = tolerance["atol"] + tolerance["rtol"] * np.abs(truth) + 4 * np.abs(theirs - truth)
    error = np.abs(ours - truth)
    assert np.all((error <= allowed) | (np.isnan(ours) & np.isnan(truth))), (
        f"{what}: error {np.nanmax(error - allowed)} beyond the allowance, ours {ours}, "
        f"torch {theirs}, float64 {truth}"
    )


def torch_step(module, x: np.ndarray, dy: np.ndarray) -> dict:
    """torch's output, dL/dx and accumulated parameter gradients for input x, upstream dy."""
    tx = torch.tensor(x, requires_grad=True)
    out = module(tx)
    out.backward(torch.tensor(dy))
    grads = {f"d{name}": p.grad.clone() for name, p in module.named_parameters()}
    return {"output": out, "dL/dx": tx.grad, **grads}


def compare_steps(ours, theirs, shape, dtype, training: bool, steps: int, seed: int, fortran=False):
    """``steps`` forward/backward passes in the given mode (fresh input and upstream gradient
    each); outputs, dL/dx and accumulated parameter gradients each step, buffers at the end.
    In float32 a float64 copy of the torch module gives the exact answer beside torch's."""
    ours.train(training)
    theirs.train(training)
    exact = copy.deepcopy(theirs).double() if np.dtype(dtype) == np.float32 else None
    rng = np.random.default_rng(seed)
    for step in range(steps):
        x = rng.standard_normal(shape) * 2 + rng.standard_normal()
        dy = rng.standard_normal(shape)
        expected = torch_step(theirs, x.astype(dtype), dy.astype(dtype))
        truths = {} if exact is None else torch_step(exact, x, dy)
        got = ours(np.asfortranarray(x.astype(dtype)) if fortran else x.astype(dtype))
        results = {"output": got, "dL/dx": ours.backward(dy.astype(dtype))}
        results.update({f"d{name}": p.grad for name, p in ours.named_parameters()})
        assert list(results) == list(expected)
        for what, value in results.items():
            check(value, expected[what], dtype, f"{what}, step {step}", truths.get(what))
    ours_state = ours.state_dict()
    assert list(ours_state) == list(theirs.state_dict())
    truths = {} if exact is None else dict(exact.named_buffers())
    for bname, b in theirs.named_buffers():
        check(ours_state[bname], b, dtype, bname, truths.get(bname))


@st.composite
def batch_norm_cases(draw):
    two_d = draw(st.booleans())
    n = draw(st.integers(0, 4))
    c = draw(st.integers(1, 4))
    sizes = (2, 2) if two_d else (0, 1)
    spatial = draw(st.lists(st.integers(1, 4), min_size=sizes[0], max_size=sizes[1]))
    kwargs = dict(
        eps=draw(st.sampled_from([1e-5, 1e-3, 0.5])),
        momentum=draw(st.sampled_from([None, 0.0, 0.1, 0.7, 1.0])),
        affine=draw(st.booleans()),
        track_running_stats=draw(st.booleans()),
        bias=draw(st.booleans()),
    )
    training = draw(st.booleans())
    if training or not kwargs["track_running_stats"]:
        assume(n * int(np.prod(spatial)) != 1)
    name = "BatchNorm2d" if two_d else "BatchNorm1d"
    return name, (c,), kwargs, (n, c, *spatial), training


@given(batch_norm_cases(), DTYPES, st.integers(1, 3), st.booleans(), st.integers(0, 2**16))
@SETTINGS
def test_batch_norm_equals_torch(case, dtype, steps, fortran, seed):
    name, args, kwargs, shape, training = case
    ours, theirs = build(name, args, kwargs, dtype, seed)
    compare_steps(ours, theirs, shape, dtype, training, steps, seed, fortran)
    if training:
        compare_steps(ours, theirs, shape, dtype, False, 1, seed + 1, fortran)


@st.composite
def instance_norm_cases(draw):
    two_d = draw(st.booleans())
    batch = draw(st.sampled_from([(), (0,), (1,), (3,)]))
    c = draw(st.integers(1, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 4), min_size=1 + two_d, max_size=1 + two_d)))
    kwargs = dict(
        eps=draw(st.sampled_from([1e-5, 1e-3])),
        momentum=draw(st.sampled_from([None, 0.0, 0.1, 1.0])),
        affine=draw(st.booleans()),
        track_running_stats=draw(st.booleans()),
        bias=draw(st.booleans()),
    )
    training = draw(st.booleans())
    if training or not kwargs["track_running_stats"]:
        assume(int(np.prod(spatial)) > 1)
    assume(batch != (0,) or not kwargs["affine"])  # torch 2.13 raises IndexError there
    name = "InstanceNorm2d" if two_d else "InstanceNorm1d"
    return name, (c,), kwargs, (*batch, c, *spatial), training


@given(instance_norm_cases(), DTYPES, st.integers(1, 3), st.integers(0, 2**16))
@SETTINGS
def test_instance_norm_equals_torch(case, dtype, steps, seed):
    name, args, kwargs, shape, training = case
    ours, theirs = build(name, args, kwargs, dtype, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # torch: an empty batch's NaN statistics
        compare_steps(ours, theirs, shape, dtype, training, steps, seed)
        if training:
            compare_steps(ours, theirs, shape, dtype, False, 1, seed + 1)


@st.composite
def group_norm_cases(draw):
    groups = draw(st.integers(1, 4))
    c = groups * draw(st.integers(1, 3))
    shape = (draw(st.integers(0, 3)), c, *draw(st.lists(st.integers(1, 3), max_size=2)))
    kwargs = dict(
        eps=draw(st.sampled_from([1e-5, 1e-3])),
        affine=draw(st.booleans()),
        bias=draw(st.booleans()),
    )
    assume(int(np.prod(shape)) != groups)  # torch rejects one sample of one value per group
    return (groups, c), kwargs, shape


@given(group_norm_cases(), DTYPES, st.booleans(), st.integers(0, 2**16))
@SETTINGS
def test_group_norm_equals_torch(case, dtype, training, seed):
    args, kwargs, shape = case
    ours, theirs = build("GroupNorm", args, kwargs, dtype, seed)
    compare_steps(ours, theirs, shape, dtype, training, 2, seed)


@st.composite
def layer_norm_cases(draw):
    normalized = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    leading = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    as_int = len(normalized) == 1 and draw(st.booleans())
    kwargs = dict(
        eps=draw(st.sampled_from([1e-5, 1e-3])),
        elementwise_affine=draw(st.booleans()),
        bias=draw(st.booleans()),
    )
    return (normalized[0] if as_int else list(normalized),), kwargs, leading + normalized


@given(layer_norm_cases(), DTYPES, st.booleans(), st.integers(0, 2**16))
@SETTINGS
def test_layer_norm_equals_torch(case, dtype, training, seed):
    args, kwargs, shape = case
    ours, theirs = build("LayerNorm", args, kwargs, dtype, seed)
    compare_steps(ours, theirs, shape, dtype, training, 2, seed)


def test_momentum_none_is_the_cumulative_average_of_the_batch_statistics(rng):
    layer = nn.BatchNorm2d(3, momentum=None, dtype=np.float64)
    batches = [rng.standard_normal((4, 3, 2, 2)) * (k + 1) + k for k in range(4)]
    for x in batches:
        layer(x)
    means = [x.mean(axis=(0, 2, 3)) for x in batches]
    variances = [x.var(axis=(0, 2, 3), ddof=1) for x in batches]
    np.testing.assert_allclose(layer.running_mean, np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, np.mean(variances, axis=0), rtol=1e-12)
    assert layer.num_batches_tracked == 4


def test_num_batches_tracked_counts_training_batches_only(rng):
    layer = nn.BatchNorm1d(3, dtype=np.float64)
    x = rng.standard_normal((4, 3))
    layer(x), layer(x), layer.eval()(x)
    assert layer.num_batches_tracked == 2 and layer.num_batches_tracked.dtype == np.int64
    instance = nn.InstanceNorm1d(3, track_running_stats=True, dtype=np.float64)
    instance(rng.standard_normal((2, 3, 5)))
    assert instance.num_batches_tracked == 0  # torch's instance norm never counts


@pytest.mark.parametrize(
    "name, args, kwargs",
    [
        ("BatchNorm1d", (3,), {}),
        ("BatchNorm2d", (3,), {"affine": False}),
        ("BatchNorm2d", (3,), {"bias": False}),
        ("BatchNorm2d", (3,), {"track_running_stats": False, "momentum": None}),
        ("InstanceNorm1d", (3,), {}),
        ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}),
        ("InstanceNorm2d", (3,), {"affine": True, "bias": False}),
        ("GroupNorm", (2, 4), {}),
        ("GroupNorm", (2, 4), {"affine": False}),
        ("GroupNorm", (2, 4), {"bias": False}),
        ("LayerNorm", ((2, 3),), {}),
        ("LayerNorm", (4,), {"elementwise_affine": False}),
        ("LayerNorm", ([2],), {"bias": False, "eps": 1e-3}),
    ],
)
def test_state_dict_keys_and_repr_equal_torch(name, args, kwargs):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert repr(ours) == repr(theirs)
    for key, value in theirs.state_dict().items():
        check(ours.state_dict()[key], value, np.float32, key)


def test_strict_load_keeps_num_batches_tracked_when_the_state_dict_leaves_it_out():
    layer = nn.BatchNorm2d(2)
    layer.num_batches_tracked[...] = 7
    state = {"weight": np.full(2, 2.0), "bias": np.ones(2)}
    state.update(running_mean=np.full(2, 0.5), running_var=np.full(2, 3.0))
    layer.load_state_dict(state, strict=True)
    assert layer.num_batches_tracked == 7
    np.testing.assert_array_equal(layer.running_var, [3, 3])
    reference = torch.nn.BatchNorm2d(2)
    reference.num_batches_tracked.fill_(7)
    reference.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=True)
    assert reference.num_batches_tracked == 7


def test_strict_load_still_rejects_other_missing_and_unexpected_keys():
    state = nn.BatchNorm1d(2).state_dict()
    del state["running_mean"]
    with pytest.raises(ValueError, match=r"missing \['running_mean'\], unexpected \[\]"):
        nn.BatchNorm1d(2).load_state_dict(state)
    full = nn.BatchNorm1d(2).state_dict()
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['running_mean', 'running"):
        nn.BatchNorm1d(2, track_running_stats=False).load_state_dict(full)
    nn.BatchNorm1d(2).load_state_dict(state, strict=False)


GRADCHECKS = [
    ("BatchNorm1d", (3,), {}, (5, 3), True),
    ("BatchNorm1d", (3,), {"bias": False, "momentum": None}, (4, 3, 3), True),
    ("BatchNorm2d", (3,), {"track_running_stats": False}, (2, 3, 2, 3), False),
    ("BatchNorm2d", (3,), {}, (2, 3, 2, 2), False),
    ("InstanceNorm1d", (3,), {"affine": True}, (2, 3, 5), True),
    ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}, (2, 3, 2, 3), True),
    ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}, (2, 3, 2, 3), False),
    ("InstanceNorm2d", (3,), {"affine": True}, (3, 2, 3), True),
    ("GroupNorm", (2, 6), {}, (2, 6, 3), True),
    ("GroupNorm", (3, 3), {"bias": False}, (2, 3, 2, 2), True),
    ("LayerNorm", ((2, 3),), {}, (3, 2, 3), True),
    ("LayerNorm", (4,), {"bias": False}, (2, 2, 4), True),
]


@pytest.mark.parametrize(
    "name, args, kwargs, shape, training",
    GRADCHECKS,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(GRADCHECKS)],
)
def test_gradcheck_float64(name, args, kwargs, shape, training, rng):
    layer = getattr(nn, name)(*args, **kwargs, dtype=np.float64).train(training)
    for p in layer.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    assert_gradcheck(layer, rng.standard_normal(shape) * 2 + 1, max_per_array=40)


@pytest.mark.parametrize(
    "forward, backward, args",
    [
        (F.group_norm, F.group_norm_backward, (2,)),
        (F.layer_norm, F.layer_norm_backward, ((3, 4),)),
        (F.instance_norm, F.instance_norm_backward, ()),
    ],
    ids=["group_norm", "layer_norm", "instance_norm"],
)
def test_functional_gradcheck_float64(forward, backward, args, rng):
    x = rng.standard_normal((2, 4, 3, 4))
    gamma_shape = args[0] if forward is F.layer_norm else (4,)
    gamma, beta = rng.standard_normal(gamma_shape), rng.standard_normal(gamma_shape)

    def run(x, gamma, beta):
        if forward is F.instance_norm:
            return forward(x, None, None, gamma, beta)
        return forward(x, *args, gamma, beta)

    assert_gradcheck((run, backward), x, gamma, beta)


X = np.zeros((2, 3, 4, 4), np.float32)
ERRORS = [
    (lambda: nn.GroupNorm(2, 5), ValueError,
     r"^GroupNorm num_channels=5 must be divisible by num_groups=2$"),
    (lambda: nn.GroupNorm(0, 4), ValueError,
     r"^GroupNorm num_groups must be a positive int, got 0$"),
    (lambda: nn.GroupNorm(2, 2.0), ValueError,
     r"^GroupNorm num_channels must be a positive int, got 2.0$"),
    (lambda: nn.GroupNorm(1, 3, eps=0), ValueError,
     r"^GroupNorm eps must be a positive number, got 0$"),
    (lambda: nn.GroupNorm(1, 3)(np.zeros(3, np.float32)), ValueError,
     r"^GroupNorm expected input \(N, 3, \.\.\.\), got shape \(3,\)$"),
    (lambda: nn.GroupNorm(1, 4)(X), ValueError,
     r"^GroupNorm expected input \(N, 4, \.\.\.\), got shape \(2, 3, 4, 4\)$"),
    (lambda: nn.GroupNorm(1, 3)(X.astype(np.float64)), TypeError,
     r"^GroupNorm expected input of dtype float32, got float64"),
    (lambda: nn.LayerNorm((2, -1)), ValueError,
     r"^LayerNorm normalized_shape must be a positive int, got -1$"),
    (lambda: nn.LayerNorm("4"), ValueError, r"normalized_shape .* got '4'$"),
    (lambda: nn.LayerNorm(4, eps=-1.0), ValueError, r"^LayerNorm eps must be a positive number"),
    (lambda: nn.LayerNorm((4, 3))(X), ValueError,
     r"^layer_norm expected input whose last dimensions are \(4, 3\), got shape \(2, 3, 4, 4\)$"),
    (lambda: nn.LayerNorm((2, 2, 3, 4, 4))(X), ValueError,
     r"^layer_norm expected input whose last dimensions are \(2, 2, 3, 4, 4\)"),
    (lambda: nn.LayerNorm(4)([1.0, 2.0]), TypeError,
     r"^LayerNorm expected a numpy.ndarray, got list$"),
    (lambda: nn.InstanceNorm2d(3)(np.zeros((3, 4), np.float32)), ValueError,
     r"^InstanceNorm2d expected 3-D \(unbatched\) or 4-D input, got shape \(3, 4\)$"),
    (lambda: nn.InstanceNorm1d(3)(X), ValueError,
     r"^InstanceNorm1d expected 2-D \(unbatched\) or 3-D input, got shape \(2, 3, 4, 4\)$"),
    (lambda: nn.InstanceNorm2d(4, affine=True)(X), ValueError,
     r"^InstanceNorm2d expected input with 4 channels, got 3 \(input shape \(2, 3, 4, 4\)\)$"),
    (lambda: nn.InstanceNorm2d(4, track_running_stats=True)(X), ValueError,
     r"^InstanceNorm2d expected input with 4 channels, got 3"),
    (lambda: nn.InstanceNorm2d(3)(np.zeros((2, 3, 1, 1), np.float32)), ValueError,
     r"^instance_norm with input statistics needs more than 1 spatial value per channel \(as "
     r"torch\), got input shape \(2, 3, 1, 1\)$"),
    (lambda: nn.InstanceNorm1d(3, momentum=-0.5), ValueError,
     r"^InstanceNorm1d momentum must be in \[0, 1\], got -0.5$"),
    (lambda: nn.BatchNorm2d(3, momentum=True), ValueError,
     r"^BatchNorm2d momentum must be in \[0, 1\], got True$"),
    (lambda: nn.BatchNorm1d(3)(np.zeros(3, np.float32)), ValueError,
     r"^BatchNorm1d expected 2-D or 3-D input, got shape \(3,\)$"),
    (lambda: nn.BatchNorm2d(3)(X[0]), ValueError,
     r"^BatchNorm2d expected 4-D input, got shape \(3, 4, 4\)$"),
    (lambda: nn.BatchNorm1d(4)(np.zeros((2, 3, 5), np.float32)), ValueError,
     r"^BatchNorm1d expected input with 4 channels, got 3 \(input shape \(2, 3, 5\)\)$"),
    (lambda: nn.BatchNorm2d(3, track_running_stats=False).eval()(X[:1, :, :1, :1]), ValueError,
     r"^batch_norm in training mode needs more than 1 value per channel, got input shape "
     r"\(1, 3, 1, 1\)$"),
    (lambda: F.group_norm(X, 2), ValueError,
     r"^group_norm expected input \(N, C, \.\.\.\) with C divisible by num_groups=2, got shape "
     r"\(2, 3, 4, 4\)$"),
    (lambda: F.group_norm(X, 3, np.ones(4, np.float32)), ValueError,
     r"^group_norm expected weight of shape \(3,\) for input \(2, 3, 4, 4\), got \(4,\)$"),
    (lambda: F.group_norm(X, 3, np.ones(3)), TypeError,
     r"^group_norm expected all arrays to share one dtype, got input float32, weight float64$"),
    (lambda: F.group_norm(X.astype(int), 3), TypeError,
     r"^group_norm expected input of dtype float32 or float64, got int64$"),
    (lambda: F.group_norm(X[0, 0, 0], 1), ValueError,
     r"^group_norm expected input \(N, C, \.\.\.\) with C divisible by num_groups=1, got shape "
     r"\(4,\)$"),
    (lambda: nn.GroupNorm(3, 3)(np.zeros((1, 3), np.float32)), ValueError,
     r"^group_norm expected more than 1 value per group or more than 1 sample \(as torch\), got "
     r"input shape \(1, 3\) with 3 groups$"),
    (lambda: F.layer_norm(X, (3, 4)), ValueError,
     r"^layer_norm expected input whose last dimensions are \(3, 4\), got shape \(2, 3, 4, 4\)$"),
    (lambda: F.layer_norm(X, (4,), None, np.ones(3, np.float32)), ValueError,
     r"^layer_norm expected bias of shape \(4,\) for input \(2, 3, 4, 4\), got \(3,\)$"),
    (lambda: F.instance_norm(X[0, 0]), ValueError,
     r"^instance_norm expected input \(N, C, \.\.\.\) of 3 or more dims, got shape \(4, 4\)$"),
    (lambda: F.instance_norm(X, np.zeros(4, np.float32)), ValueError,
     r"^instance_norm expected running_mean of shape \(3,\) for input \(2, 3, 4, 4\), got \(4,\)$"),
    (lambda: F.instance_norm(X, use_input_stats=False), ValueError,
     r"^instance_norm without input statistics needs running_mean and running_var$"),
]  # fmt: skip


@pytest.mark.parametrize("call, exception, pattern", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_error_messages(call, exception, pattern):
    with pytest.raises(exception, match=pattern):
        call()


def test_instance_norm_without_affine_or_statistics_warns_on_a_channel_mismatch_as_torch():
    with pytest.warns(UserWarning, match=r"InstanceNorm2d expected input with 4 channels, got 3"):
        out = nn.InstanceNorm2d(4)(X + np.arange(16, dtype=np.float32).reshape(4, 4))
    with pytest.warns(UserWarning, match="does not match num_features"):
        expected = torch.nn.InstanceNorm2d(4)(torch.tensor(X) + torch.arange(16.0).reshape(4, 4))
    check(out, expected, np.float32, "output")


@pytest.mark.parametrize(
    "layer, shape",
    [
        (nn.InstanceNorm2d(3, affine=True, dtype=np.float64), (0, 3, 2, 2)),
        (nn.GroupNorm(1, 2, dtype=np.float64), (2, 2, 0)),
        (nn.LayerNorm(3, dtype=np.float64), (0, 3)),
        (nn.BatchNorm2d(3, dtype=np.float64), (0, 3, 2, 2)),
    ],
    ids=["instance_norm_empty_batch", "group_norm_empty_positions", "layer_norm", "batch_norm"],
)
def test_an_empty_input_gives_an_empty_output_and_zero_parameter_gradients(layer, shape):
    """Where torch 2.13 raises IndexError (affine instance norm on an empty batch) or gives NaN
    parameter gradients (group norm over zero positions), cnnkit sums nothing: zeros."""
    out = layer(np.zeros(shape))
    assert out.shape == shape
    assert layer.backward(np.zeros(shape)).shape == shape
    for _, p in layer.named_parameters():
        np.testing.assert_array_equal(p.grad, np.zeros_like(p.grad))


@pytest.mark.parametrize(
    "layer",
    [nn.GroupNorm(1, 3), nn.LayerNorm(3), nn.InstanceNorm1d(3), nn.InstanceNorm2d(3)],
    ids=repr,
)
def test_backward_before_forward_raises(layer):
    with pytest.raises(RuntimeError, match=rf"^{type(layer).__name__}\.backward called before"):
        layer.backward(np.zeros((2, 3, 3), np.float32))
