"""The torch.nn losses: cnnkit against PyTorch on random shapes and configurations (hypothesis),
float64 gradient checks, torch's edge cases (every target ignored, -inf logits, kinks) and every
error message."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from checks import PARITY_TOL as TOL
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit as ck
from cnnkit import nn
from cnnkit.functional import loss as C
from cnnkit.functional import regression_loss as R
from cnnkit.gradcheck import gradcheck
from cnnkit.train import evaluate

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=25, deadline=None)
REDUCTIONS = ("none", "mean", "sum")
dtypes = st.sampled_from([np.float64, np.float32])


def _torch_kwargs(kwargs: dict) -> dict:
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


def _assert_matches_torch(name: str, kwargs: dict, x: np.ndarray, target, seed: int = 0):
    """Our module and torch's on the same input: the loss, then dL/dx for a random dL/dloss."""
    target = np.asarray(target)
    ours = getattr(nn, name)(**kwargs)
    loss = ours(x, target)
    xt = torch.tensor(x, requires_grad=True)
    expected = getattr(torch.nn, name)(**_torch_kwargs(kwargs))(xt, torch.from_numpy(target))
    tol = TOL[x.dtype]
    if kwargs.get("reduction", "mean") == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == x.dtype
        assert loss.shape == tuple(expected.shape)
    else:
        assert isinstance(loss, float)
    np.testing.assert_allclose(loss, expected.detach().numpy(), **tol)
    dloss = np.random.default_rng(seed).standard_normal(expected.shape).astype(x.dtype)
    expected.backward(torch.from_numpy(dloss))
    grad = ours.backward(dloss if dloss.ndim else float(dloss))
    assert grad.dtype == x.dtype and grad.shape == x.shape
    np.testing.assert_allclose(grad, xt.grad.numpy(), **tol)


@st.composite
def class_problems(draw, probabilities_allowed: bool = True):
    """Input (N, C, d1, ...) or (C,), targets (labels or probabilities) and loss arguments."""
    dtype = draw(dtypes)
    classes = draw(st.integers(1, 5))
    unbatched = draw(st.booleans())
    extra = () if unbatched else tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    batch = () if unbatched else (draw(st.integers(1, 4)),)
    shape = batch + (classes,) + extra
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    kwargs = {"reduction": draw(st.sampled_from(REDUCTIONS))}
    if draw(st.booleans()):
        kwargs["weight"] = rng.uniform(0.2, 2.0, classes).astype(dtype)
    if probabilities_allowed and draw(st.booleans()):
        target = rng.dirichlet(np.ones(classes), batch + extra).astype(dtype)
        target = np.moveaxis(target, -1, 0 if unbatched else 1)
    else:
        target = rng.integers(0, classes, batch + extra)
        if draw(st.booleans()):
            ignore_index = draw(st.sampled_from([-1, 0, classes - 1]))
            kwargs["ignore_index"] = ignore_index
            target = np.where(rng.random(target.shape) < 0.3, ignore_index, target)
    return x, target, kwargs, seed


@SETTINGS
@given(class_problems(), st.sampled_from([0.0, 0.1, 0.45, 1.0]))
def test_cross_entropy_equals_torch(problem, label_smoothing):
    x, target, kwargs, seed = problem
    kwargs["label_smoothing"] = label_smoothing
    _assert_matches_torch("CrossEntropyLoss", kwargs, x, target, seed)


@SETTINGS
@given(class_problems(probabilities_allowed=False))
def test_nll_loss_equals_torch(problem):
    x, target, kwargs, seed = problem
    log_probs, _ = ck.functional.log_softmax(x, axis=0 if x.ndim == 1 else 1)
    _assert_matches_torch("NLLLoss", kwargs, log_probs, target, seed)


@st.composite
def pointwise_problems(draw):
    dtype = draw(dtypes)
    shape = tuple(draw(st.lists(st.integers(1, 4), max_size=3)))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = np.asarray(rng.standard_normal(shape) * 2, dtype)
    target = np.asarray(rng.standard_normal(shape) * 2, dtype)
    return x, target, draw(st.sampled_from(REDUCTIONS)), seed


@SETTINGS
@given(
    pointwise_problems(),
    st.sampled_from(
        [
            ("MSELoss", {}),
            ("L1Loss", {}),
            ("SmoothL1Loss", {"beta": 1.0}),
            ("SmoothL1Loss", {"beta": 0.0}),
            ("SmoothL1Loss", {"beta": 2.5}),
            ("HuberLoss", {"delta": 1.0}),
            ("HuberLoss", {"delta": 0.3}),
        ]
    ),
)
def test_regression_losses_equal_torch(problem, loss):
    x, target, reduction, seed = problem
    name, kwargs = loss
    _assert_matches_torch(name, {**kwargs, "reduction": reduction}, x, target, seed)


@SETTINGS
@given(pointwise_problems(), st.booleans(), st.booleans(), st.booleans())
def test_bce_with_logits_equals_torch(problem, soft, with_weight, with_pos_weight):
    x, target, reduction, seed = problem
    rng = np.random.default_rng(seed + 1)
    x = np.asarray(x * 10)  # far into both tails of the sigmoid
    target = rng.random(x.shape) if soft else rng.integers(0, 2, x.shape)
    target = np.asarray(target, x.dtype)
    kwargs = {"reduction": reduction}
    if with_weight:  # broadcast from a trailing part of the shape
        kwargs["weight"] = rng.uniform(0.1, 2, x.shape[rng.integers(0, x.ndim + 1) :])
    if with_pos_weight and x.ndim:  # one per class, on the last axis
        kwargs["pos_weight"] = rng.uniform(0.1, 4, x.shape[-1:])
    kwargs = {k: v.astype(x.dtype) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    _assert_matches_torch("BCEWithLogitsLoss", kwargs, x, target, seed)


# --------------------------------------------------------------------------------------------
# torch's edge cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "NLLLoss"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_every_target_ignored_gives_nan_mean_and_zero_gradient(name, weighted, reduction, rng):
    x = rng.standard_normal((4, 3, 2))
    target = np.full((4, 2), 1)
    kwargs = {"ignore_index": 1, "reduction": reduction}
    if weighted:
        kwargs["weight"] = np.array([0.5, 2.0, 3.0])
    if name == "CrossEntropyLoss":
        kwargs["label_smoothing"] = 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_matches_torch(name, kwargs, x, target)
    loss_fn = getattr(nn, name)(**kwargs)
    loss = loss_fn(x, target)
    assert np.isnan(loss) if reduction == "mean" else np.all(loss == 0)
    assert np.all(loss_fn.backward(np.ones(np.shape(loss))) == 0)


@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_empty_batch_gives_nan_mean_as_torch(kind):
    target = np.zeros(0, np.int64) if kind == "labels" else np.zeros((0, 3))
    loss_fn = nn.CrossEntropyLoss()
    expected = torch.nn.CrossEntropyLoss()(torch.zeros(0, 3), torch.from_numpy(target))
    assert np.isnan(loss_fn(np.zeros((0, 3)), target)) and torch.isnan(expected)
    assert loss_fn.backward().shape == (0, 3)


def test_minus_infinity_logits_without_smoothing_stay_finite_as_torch():
    x = np.array([[0.0, -np.inf, 1.0], [2.0, 0.0, -np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_matches_torch("CrossEntropyLoss", {}, x, np.array([0, 1]))
        _assert_matches_torch("CrossEntropyLoss", {"weight": np.array([1.0, 2, 3])}, x, [0, 1])


def test_negative_weights_and_the_weighted_mean_denominator_equal_torch(rng):
    x = rng.standard_normal((6, 3))
    weight = np.array([0.4, -3.4, 1.1])
    for kwargs in ({"label_smoothing": 0.3}, {"ignore_index": 2}):
        _assert_matches_torch("CrossEntropyLoss", {"weight": weight, **kwargs}, x, [0, 1, 2] * 2)
    loss = nn.NLLLoss(weight=weight)(x, np.array([0, 1, 2, 0, 1, 2]))
    picked = x[np.arange(6), [0, 1, 2, 0, 1, 2]]
    assert loss == pytest.approx(-(weight[[0, 1, 2] * 2] * picked).sum() / (2 * weight.sum()))


@pytest.mark.parametrize("name, kwargs", [("SmoothL1Loss", {"beta": 1.0}),
                                          ("SmoothL1Loss", {"beta": 0.0}),
                                          ("HuberLoss", {"delta": 1.0}),
                                          ("L1Loss", {})])  # fmt: skip
def test_kinks_take_torch_s_side(name, kwargs):
    x = np.array([0.0, 1.0, -1.0, 2.0, -3.0, 0.5])
    target = np.array([0.0, 0.0, 0.0, 1.0, -2.0, 0.5])  # d = 0, +-1 and equal
    _assert_matches_torch(name, {**kwargs, "reduction": "none"}, x, target)


def test_huge_logits_stay_finite_in_bce():
    x = np.array([1e4, -1e4, 800.0, -800.0, 0.0], np.float32)
    t = np.array([0.0, 1.0, 1.0, 0.0, 0.5], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_matches_torch("BCEWithLogitsLoss", {"pos_weight": np.float32([2.0])}, x, t)


# --------------------------------------------------------------------------------------------
# gradient checks in float64
# --------------------------------------------------------------------------------------------


def _op(function, backward, target, *args, **kwargs):
    def forward(x):
        loss, cache = function(x, target, *args, **kwargs)
        return np.asarray(loss), cache

    return forward, lambda dout, cache: backward(cache, dout)


def _gradcheck_cases(rng):
    labels = rng.integers(0, 4, (3, 2))
    labels[0, 0] = 1
    soft = rng.dirichlet(np.ones(4), (3, 2)).transpose(0, 2, 1)
    weight = rng.uniform(0.5, 2, 4)
    target = rng.standard_normal((3, 4))
    ce, nll = (C.cross_entropy, C.cross_entropy_backward), (C.nll_loss, C.nll_loss_backward)
    bce = (C.binary_cross_entropy_with_logits, C.binary_cross_entropy_with_logits_backward)
    return {
        "ce_labels_weight_ignore_smooth_mean": (
            _op(*ce, labels, "mean", 0.2, weight=weight, ignore_index=1),
            (3, 4, 2),
        ),
        "ce_labels_none": (_op(*ce, labels, "none", 0.1), (3, 4, 2)),
        "ce_probabilities_weight_sum": (_op(*ce, soft, "sum", 0.3, weight=weight), (3, 4, 2)),
        "ce_unbatched": (_op(*ce, np.array(2), "none", 0.1, weight=weight), (4,)),
        "nll_weight_ignore_mean": (
            _op(*nll, labels, "mean", weight=weight, ignore_index=1),
            (3, 4, 2),
        ),
        "bce_weight_pos_weight_none": (
            _op(*bce, rng.random((3, 4)), "none", weight=weight, pos_weight=weight[::-1]),
            (3, 4),
        ),
        "mse_none": (_op(R.mse_loss, R.mse_loss_backward, target, "none"), (3, 4)),
        "l1_sum": (_op(R.l1_loss, R.l1_loss_backward, target, "sum"), (3, 4)),
        "smooth_l1_mean": (
            _op(R.smooth_l1_loss, R.smooth_l1_loss_backward, target, "mean", 0.7),
            (3, 4),
        ),
        "huber_none": (_op(R.huber_loss, R.huber_loss_backward, target, "none", 0.6), (3, 4)),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(_gradcheck_cases(np.random.default_rng(0))))
def test_gradcheck(case, rng):
    op, shape = _gradcheck_cases(rng)[case]
    report = gradcheck(op, rng.standard_normal(shape) * 2)
    assert report.checked > 0
    assert report.passed, str(report)


# --------------------------------------------------------------------------------------------
# modules: buffers, caches, the trainer
# --------------------------------------------------------------------------------------------


def test_weights_are_buffers_in_state_dict_cast_by_to():
    loss_fn = nn.CrossEntropyLoss(weight=[1, 2, 3])
    assert loss_fn.weight.dtype == np.float32
    assert list(loss_fn.state_dict()) == ["weight"]
    assert loss_fn.to(np.float64).weight.dtype == np.float64
    bce = nn.BCEWithLogitsLoss(pos_weight=np.ones(3))
    assert bce.weight is None and list(bce.state_dict()) == ["pos_weight"]
    assert list(nn.NLLLoss().state_dict()) == [] and nn.NLLLoss().parameters() == []


def test_repr_shows_the_arguments():
    assert repr(nn.CrossEntropyLoss(weight=np.array([1.0, 2.0]), label_smoothing=0.1)) == (
        "CrossEntropyLoss(reduction='mean', weight=[1., 2.], ignore_index=-100, "
        "label_smoothing=0.1)"
    )
    assert repr(nn.SmoothL1Loss(beta=0.5)) == "SmoothL1Loss(reduction='mean', beta=0.5)"
    assert repr(nn.HuberLoss("sum", 2)) == "HuberLoss(reduction='sum', delta=2.0)"


def test_float32_weight_does_not_upcast_float32_logits(rng):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    loss_fn = nn.CrossEntropyLoss(weight=np.array([1.0, 2.0, 0.5]), reduction="none")
    assert loss_fn(x, rng.integers(0, 3, 5)).dtype == np.float32
    assert loss_fn.backward(np.ones(5)).dtype == np.float32


def test_two_calls_backpropagate_newest_first(rng):
    loss_fn = nn.MSELoss(reduction="sum")
    a, b = rng.standard_normal((2, 3, 4))
    loss_fn(a, np.zeros_like(a))
    loss_fn(b, np.zeros_like(b))
    np.testing.assert_allclose(loss_fn.backward(), 2 * b)
    np.testing.assert_allclose(loss_fn.backward(0.5), a)


def test_evaluate_keeps_no_cache_in_the_loss(rng):
    model = nn.Linear(4, 3, rng=rng)
    loss_fn = nn.CrossEntropyLoss()
    x = rng.standard_normal((6, 4)).astype(np.float32)
    evaluate(model, [(x, rng.integers(0, 3, 6))] * 3, loss_fn)
    with pytest.raises(RuntimeError, match="after a forward pass under cnnkit.no_grad"):
        loss_fn.backward()


# --------------------------------------------------------------------------------------------
# error messages
# --------------------------------------------------------------------------------------------

X = np.zeros((2, 3))
LABELS = np.array([0, 2])
TX = torch.zeros(2, 3)

ERRORS = [
    ("bad_reduction_module", lambda: nn.NLLLoss(reduction="avg"), ValueError,
     r"^reduction must be one of \('none', 'mean', 'sum'\), got 'avg'$"),
    ("bad_reduction_functional", lambda: R.huber_loss(X, X, reduction=None), ValueError,
     r"^reduction must be one of \('none', 'mean', 'sum'\), got None$"),
    ("bad_reduction_l1", lambda: nn.L1Loss(reduction="mean "), ValueError,
     r"^reduction must be one of \('none', 'mean', 'sum'\), got 'mean '$"),
    ("ce_target_shape", lambda: nn.CrossEntropyLoss()(np.zeros((2, 3, 4)), np.zeros((2, 3), int)),
     ValueError, r"^cross_entropy expected labels of shape \(2, 4\) or one-hot/probabilities of "
     r"shape \(2, 3, 4\), got \(2, 3\)$"),
    ("ce_unbatched_target_shape", lambda: nn.CrossEntropyLoss()(np.zeros(3), np.array([1])),
     ValueError, r"^cross_entropy expected labels of shape \(\) or one-hot/probabilities of "
     r"shape \(3,\), got \(1,\)$"),
    ("nll_target_shape", lambda: nn.NLLLoss()(X, np.zeros((2, 3), int)), ValueError,
     r"^nll_loss expected labels of shape \(2,\) for input of shape \(2, 3\), got \(2, 3\)$"),
    ("bce_target_shape", lambda: nn.BCEWithLogitsLoss()(X, np.zeros(3)), ValueError,
     r"^binary_cross_entropy_with_logits expected target of shape \(2, 3\), got \(3,\)$"),
    ("l1_target_shape", lambda: nn.L1Loss()(X, np.zeros((3, 2))), ValueError,
     r"^l1_loss expected target of shape \(2, 3\), got \(3, 2\)$"),
    ("smooth_l1_target_shape", lambda: nn.SmoothL1Loss()(X, np.zeros(())), ValueError,
     r"^smooth_l1_loss expected target of shape \(2, 3\), got \(\)$"),
    ("huber_target_shape", lambda: nn.HuberLoss()(X, np.zeros((2, 1))), ValueError,
     r"^huber_loss expected target of shape \(2, 3\), got \(2, 1\)$"),
    ("ce_target_too_large", lambda: nn.CrossEntropyLoss(ignore_index=3)(X, np.array([3, 4])),
     ValueError, r"^cross_entropy labels must lie in \[0, 2\], got values from 4 to 4 "
     r"\(ignore_index is 3\)$"),
    ("ce_negative_target", lambda: nn.CrossEntropyLoss(ignore_index=-1)(X, np.array([-2, 0])),
     ValueError, r"^cross_entropy labels must lie in \[0, 2\], got values from -2 to 0 "
     r"\(ignore_index is -1\)$"),
    ("nll_target_out_of_range", lambda: nn.NLLLoss()(X, np.array([0, 5])), ValueError,
     r"^nll_loss labels must lie in \[0, 2\], got values from 0 to 5 \(ignore_index is -100\)$"),
    ("nll_float_labels", lambda: nn.NLLLoss()(X, np.array([0.0, 1.0])), TypeError,
     r"^nll_loss expected integer class labels, got dtype float64$"),
    ("ce_weight_length", lambda: nn.CrossEntropyLoss(weight=np.ones(4))(X, LABELS), ValueError,
     r"^cross_entropy expected weight of shape \(3,\), one per class of input with 3 classes, "
     r"got shape \(4,\)$"),
    ("nll_weight_length", lambda: C.nll_loss(X, LABELS, weight=np.ones(2)), ValueError,
     r"^nll_loss expected weight of shape \(3,\), one per class of input with 3 classes, "
     r"got shape \(2,\)$"),
    ("ce_weight_not_1d", lambda: nn.CrossEntropyLoss(weight=np.ones((3, 1))), ValueError,
     r"^CrossEntropyLoss weight must be a 1-D array of class weights, got shape \(3, 1\)$"),
    ("nll_weight_scalar", lambda: nn.NLLLoss(weight=2.0), ValueError,
     r"^NLLLoss weight must be a 1-D array of class weights, got shape \(\)$"),
    ("label_smoothing_above_one", lambda: nn.CrossEntropyLoss(label_smoothing=1.01), ValueError,
     r"^label_smoothing must be in \[0, 1\], got 1.01$"),
    ("label_smoothing_negative", lambda: C.cross_entropy(X, LABELS, label_smoothing=-0.5),
     ValueError, r"^label_smoothing must be in \[0, 1\], got -0.5$"),
    ("label_smoothing_string", lambda: nn.CrossEntropyLoss(label_smoothing="0.1"), ValueError,
     r"^label_smoothing must be in \[0, 1\], got '0.1'$"),
    ("ignore_index_float", lambda: nn.CrossEntropyLoss(ignore_index=1.0), TypeError,
     r"^CrossEntropyLoss ignore_index must be an int, got 1.0$"),
    ("ignore_index_functional", lambda: C.nll_loss(X, LABELS, ignore_index=None), TypeError,
     r"^nll_loss ignore_index must be an int, got None$"),
    ("logits_0d", lambda: nn.CrossEntropyLoss()(np.zeros(()), np.array(0)), ValueError,
     r"^cross_entropy expected logits of shape \(C,\), \(N, C\) or \(N, C, d1, ...\), got \(\)$"),
    ("logits_list", lambda: nn.CrossEntropyLoss()([[0.0, 1.0]], [0]), TypeError,
     r"^cross_entropy expected a numpy.ndarray of logits, got list$"),
    ("nll_integer_input", lambda: nn.NLLLoss()(np.zeros((2, 3), int), LABELS), TypeError,
     r"^nll_loss expected input of dtype float32 or float64, got int64$"),
    ("l1_list_prediction", lambda: nn.L1Loss()([1.0], [1.0]), TypeError,
     r"^l1_loss expected a numpy.ndarray prediction, got list$"),
    ("smooth_l1_negative_beta", lambda: nn.SmoothL1Loss(beta=-1), ValueError,
     r"^SmoothL1Loss beta must be a non-negative number, got -1$"),
    ("smooth_l1_functional_beta", lambda: R.smooth_l1_loss(X, X, beta="1"), ValueError,
     r"^smooth_l1_loss beta must be a non-negative number, got '1'$"),
    ("huber_zero_delta", lambda: nn.HuberLoss(delta=0), ValueError,
     r"^HuberLoss delta must be a positive number, got 0$"),
    ("huber_functional_delta", lambda: R.huber_loss(X, X, delta=-2.0), ValueError,
     r"^huber_loss delta must be a positive number, got -2.0$"),
    ("bce_weight_shape", lambda: nn.BCEWithLogitsLoss(weight=np.ones(2))(X, X), ValueError,
     r"^binary_cross_entropy_with_logits expected weight broadcastable to the input's shape "
     r"\(2, 3\), got shape \(2,\)$"),
    ("bce_pos_weight_grows_input",
     lambda: nn.BCEWithLogitsLoss(pos_weight=np.ones((4, 1, 3)))(X, X), ValueError,
     r"^binary_cross_entropy_with_logits expected pos_weight broadcastable to the "
     r"input's shape \(2, 3\), got shape \(4, 1, 3\)$"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, exception, pattern", [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS]
)
def test_invalid_argument_raises_one_line_message(call, exception, pattern):
    with pytest.raises(exception, match=pattern) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "reduction, dloss, expected",
    [("none", np.ones(3), r"\(2,\)"), ("none", 1.0, r"\(2,\)"), ("mean", np.ones(1), r"\(\)")],
)
def test_backward_rejects_dloss_of_the_wrong_shape(reduction, dloss, expected):
    loss_fn = nn.CrossEntropyLoss(reduction=reduction)
    loss_fn(X, LABELS)
    pattern = (
        rf"^cross_entropy backward expected dloss of shape {expected} \(the loss's shape with "
        rf"reduction='{reduction}'\), got"
    )
    with pytest.raises(ValueError, match=pattern):
        loss_fn.backward(dloss)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: nn.CrossEntropyLoss(weight=np.ones(4))(X, LABELS),
         lambda: torch.nn.CrossEntropyLoss(weight=torch.ones(4))(TX, torch.tensor([0, 2]))),
        (lambda: nn.NLLLoss()(X, np.array([0, 3])),
         lambda: torch.nn.NLLLoss()(torch.zeros(2, 3), torch.tensor([0, 3]))),
        (lambda: nn.CrossEntropyLoss(label_smoothing=1.5),
         lambda: torch.nn.CrossEntropyLoss(label_smoothing=1.5)(TX, torch.tensor([0, 1]))),
        (lambda: nn.BCEWithLogitsLoss()(X, np.zeros((3, 2))),
         lambda: torch.nn.BCEWithLogitsLoss()(torch.zeros(2, 3), torch.zeros(3, 2))),
        (lambda: nn.SmoothL1Loss(beta=-1.0),
         lambda: torch.nn.SmoothL1Loss(beta=-1.0)(torch.zeros(2), torch.zeros(2))),
        (lambda: nn.HuberLoss(delta=0.0),
         lambda: torch.nn.HuberLoss(delta=0.0)(torch.zeros(2), torch.zeros(2))),
    ],
    ids=["weight_length", "target_range", "label_smoothing", "bce_shape", "beta", "delta"],
)  # fmt: skip
def test_what_we_reject_torch_rejects_too(ours, theirs):
    with pytest.raises((ValueError, TypeError)):
        ours()
    with pytest.raises((ValueError, TypeError, RuntimeError, IndexError)):
        theirs()
