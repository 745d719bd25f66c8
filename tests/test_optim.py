"""cnnkit.optim against torch.optim: same params, same gradients, same steps."""

import io
import itertools
import json
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit.nn.module import Parameter
from cnnkit.optim import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    LRScheduler,
    MultiStepLR,
    Optimizer,
    RMSprop,
    StepLR,
)

SHAPES = [(3, 4), (5,), (2, 3, 2)]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=1e-5, atol=1e-6)}
OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop}


def _grid(**axes):
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


SGD_GRID = [
    dict(lr=0.1, **kw)
    for kw in _grid(
        momentum=[0.0, 0.9],
        dampening=[0.0, 0.3],
        nesterov=[False, True],
        weight_decay=[0.0, 0.01],
        maximize=[False, True],
    )
    if not kw["nesterov"] or (kw["momentum"] > 0 and kw["dampening"] == 0)
]
ADAM_GRID = [
    dict(lr=0.01, eps=1e-6, **kw)
    for kw in _grid(
        betas=[(0.9, 0.999), (0.3, 0.8)],
        weight_decay=[0.0, 0.1],
        amsgrad=[False, True],
        maximize=[False, True],
    )
]
RMSPROP_GRID = [
    dict(lr=0.01, **kw)
    for kw in _grid(
        alpha=[0.99, 0.5],
        momentum=[0.0, 0.5],
        centered=[False, True],
        weight_decay=[0.0, 0.1],
    )
]
CASES = [
    (name, kw)
    for name, grid in [
        ("SGD", SGD_GRID),
        ("Adam", ADAM_GRID),
        ("AdamW", ADAM_GRID),
        ("RMSprop", RMSPROP_GRID),
    ]
    for kw in grid
]


def _case_id(case):
    name, kw = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items() if k not in ("lr", "eps"))


def exact(message):
    """A pytest.raises pattern that matches exactly ``message``."""
    return f"^{re.escape(message)}$"


def make_params(dtype, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def make_grads(params, steps, seed=1):
    """Random gradients per step; the third step's gradients are all zero."""
    rng = np.random.default_rng(seed)
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(steps)]
    if steps > 2:
        grads[2] = [np.zeros_like(g) for g in grads[2]]
    return grads


def ours_and_torch(name, kwargs, params, groups=None):
    """Our optimizer on ``params`` and torch's on copies of them (single-tensor code path)."""
    tparams = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
    if groups is None:
        ours, theirs = params, tparams
    else:
        ours = [{**g, "params": [params[i] for i in g["params"]]} for g in groups]
        theirs = [{**g, "params": [tparams[i] for i in g["params"]]} for g in groups]
    opt = OPTIMIZERS[name](ours, **kwargs)
    topt = getattr(torch.optim, name)(theirs, foreach=False, **kwargs)
    return opt, topt, tparams


def run_steps(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        opt.step()


def run_torch_steps(topt, tparams, grads):
    for step_grads in grads:
        for p, g in zip(tparams, step_grads):
            p.grad = torch.from_numpy(g.copy())
        topt.step()


def assert_matches_torch(opt, topt, params, tparams, dtype):
    for p, tp in zip(params, tparams):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, tp.detach().numpy(), **TOL[dtype])
    # The state has torch's names and values.
    for p, tp in zip(params, tparams):
        tstate = topt.state[tp]
        for key, value in opt.state[p].items():
            if key == "step":
                assert "step" not in tstate or value == int(tstate["step"])
            else:
                assert value.dtype == dtype
                np.testing.assert_allclose(value, tstate[key].numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_step_matches_torch(case, dtype):
    name, kwargs = case
    params = make_params(dtype)
    opt, topt, tparams = ours_and_torch(name, kwargs, params)
    grads = make_grads(params, steps=5)
    run_steps(opt, params, grads)
    run_torch_steps(topt, tparams, grads)
    assert_matches_torch(opt, topt, params, tparams, dtype)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_param_groups_match_torch(name):
    params = make_params(np.float64)
    groups = [{"params": [0, 2], "lr": 0.05, "weight_decay": 0.1}, {"params": [1]}]
    opt, topt, tparams = ours_and_torch(name, {"lr": 0.01}, params, groups)
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.01]
    assert opt.param_groups[1]["weight_decay"] == topt.param_groups[1]["weight_decay"]
    grads = make_grads(params, steps=4)
    run_steps(opt, params, grads)
    run_torch_steps(topt, tparams, grads)
    assert_matches_torch(opt, topt, params, tparams, np.float64)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(list(OPTIMIZERS)),
    shape=st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
    lr=st.floats(1e-4, 1.0),
    momentum=st.floats(0.0, 0.99),
    decay=st.floats(0.0, 0.5),
    flag=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_hyperparameters_match_torch(name, shape, lr, momentum, decay, flag, seed):
    kwargs = {
        "SGD": dict(lr=lr, momentum=momentum, weight_decay=decay, nesterov=flag and momentum > 0),
        "Adam": dict(lr=lr, betas=(momentum, 0.999), weight_decay=decay, amsgrad=flag),
        "AdamW": dict(lr=lr, betas=(0.9, momentum), weight_decay=decay, amsgrad=flag),
        "RMSprop": dict(lr=lr, momentum=momentum, weight_decay=decay, centered=flag),
    }[name]
    params = make_params(np.float64, seed, shapes=[shape, (3,)])
    opt, topt, tparams = ours_and_torch(name, kwargs, params)
    grads = make_grads(params, steps=4, seed=seed + 1)
    run_steps(opt, params, grads)
    run_torch_steps(topt, tparams, grads)
    assert_matches_torch(opt, topt, params, tparams, np.float64)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_step_is_in_place_keeps_dtype_and_leaves_grad_alone(name):
    params = make_params(np.float32)
    data = [p.data for p in params]
    opt = OPTIMIZERS[name](params, lr=0.1, weight_decay=0.1, maximize=True)
    grads = make_grads(params, steps=1)[0]
    for p, g in zip(params, grads):
        p.grad[...] = g
    before = [p.data.copy() for p in params]
    opt.step()
    for p, d, b, g in zip(params, data, before, grads):
        assert p.data is d and p.data.dtype == np.float32
        np.testing.assert_array_equal(p.grad, g)  # maximize / weight decay copy the gradient
        assert not np.array_equal(p.data, b)
    for state in opt.state.values():
        assert all(v.dtype == np.float32 for k, v in state.items() if k != "step")


def test_zero_gradient_still_updates_parameter():
    p = Parameter(np.ones(3))
    opt = SGD([p], lr=0.1, weight_decay=0.5)
    opt.step()
    np.testing.assert_allclose(p.data, 1 - 0.1 * 0.5)
    assert opt.state[p]["step"] == 1


def test_zero_grad():
    params = make_params(np.float64)
    for p in params:
        p.grad += 1
    opt = Adam(params)
    opt.zero_grad()
    assert all(not p.grad.any() for p in params)


def test_sgd_plain_step_is_gradient_descent():
    p = Parameter(np.array([1.0, -2.0]))
    p.grad[...] = [0.5, 1.0]
    SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [0.95, -2.1])


def test_repr_and_defaults():
    opt = AdamW(make_params(np.float32), lr=0.01, betas=[np.float64(0.8), 0.9])
    assert repr(opt).startswith("AdamW(lr=0.01, betas=(0.8, 0.9)")
    assert (
        opt.param_groups[0]["weight_decay"]
        == torch.optim.AdamW([torch.zeros(1)]).defaults["weight_decay"]
    )
    assert type(opt.param_groups[0]["betas"][0]) is float


# ----------------------------------------------------------------------------- state dicts


def flatten_round_trip(state):
    """Store a state dict as .npz (arrays, no pickle) + JSON (the rest) and read it back."""
    arrays = {}

    def encode(value):
        if isinstance(value, np.ndarray):
            arrays[f"a{len(arrays)}"] = value
            return {"__array__": f"a{len(arrays) - 1}"}
        if isinstance(value, dict):
            return {str(k): encode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v) for v in value]
        assert isinstance(value, (bool, int, float, str)), type(value)
        return value

    text = json.dumps(encode(state))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        loaded = {k: stored[k] for k in stored.files}

    def decode(value):
        if isinstance(value, dict):
            if set(value) == {"__array__"}:
                return loaded[value["__array__"]]
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return decode(json.loads(text))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
        ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
        ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
        ("AdamW", dict(lr=0.01, betas=(0.8, 0.9))),
        ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ],
)
def test_state_dict_round_trip_resumes_exactly(name, kwargs, dtype):
    grads = make_grads(make_params(dtype), steps=6, seed=7)
    straight = make_params(dtype)
    run_steps(OPTIMIZERS[name](straight, **kwargs), straight, grads)

    first = make_params(dtype)
    opt = OPTIMIZERS[name](first, **kwargs)
    run_steps(opt, first, grads[:3])
    saved = opt.state_dict()
    resumed = [Parameter(p.data.copy()) for p in first]
    run_steps(opt, first, grads[3:4])  # must not reach into `saved`: state_dict returns copies

    opt2 = OPTIMIZERS[name](resumed, lr=123.0)
    opt2.load_state_dict(flatten_round_trip(saved))  # as a checkpoint stores it: .npz + JSON
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    assert all(s["step"] == 3 for s in opt2.state.values())
    run_steps(opt2, resumed, grads[3:])
    for p, q in zip(resumed, straight):
        assert p.data.dtype == dtype
        np.testing.assert_array_equal(p.data, q.data)
    assert saved["state"][0]["step"] == 3


def test_state_dict_layout():
    params = make_params(np.float64)
    opt = Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], betas=(0.8, 0.9))
    assert opt.state_dict() == {
        "param_groups": [
            dict(lr=1e-3, betas=[0.8, 0.9], eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False, params=[0]),
            dict(lr=0.5, betas=[0.8, 0.9], eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False, params=[1, 2]),
        ],
        "state": {},
    }  # fmt: skip
    opt.step()
    state = opt.state_dict()["state"]
    assert sorted(state) == [0, 1, 2]
    assert sorted(state[2]) == ["exp_avg", "exp_avg_sq", "step"]
    opt.load_state_dict(opt.state_dict())
    assert opt.param_groups[0]["betas"] == (0.8, 0.9)


def _stepped_sgd():
    params = make_params(np.float64)
    opt = SGD(params, lr=0.1, momentum=0.9)
    opt.step()
    return opt


LOAD = "SGD.load_state_dict: "


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s: s.pop("state"),
            LOAD + "expected keys ['param_groups', 'state'], got ['param_groups']",
        ),
        (
            lambda s: s["param_groups"].append({"params": []}),
            LOAD + "got 2 parameter groups, expected 1",
        ),
        (
            lambda s: s["param_groups"][0]["params"].pop(),
            LOAD + "parameter group 0 has 2 parameters, expected 3",
        ),
        (
            lambda s: s["state"].update({7: {}}),
            LOAD + "state for unknown parameter index 7, expected one of [0, 1, 2]",
        ),
        (
            lambda s: s["state"].update({"x": {}}),
            LOAD + "state for unknown parameter index 'x', expected one of [0, 1, 2]",
        ),
        (
            lambda s: s["state"][1].pop("momentum_buffer"),
            LOAD + "parameter 1 has state keys ['step'], expected ['momentum_buffer', 'step']",
        ),
        (
            lambda s: s["state"][0].update(exp_avg=np.zeros(3)),
            LOAD + "parameter 0 has state keys ['exp_avg', 'momentum_buffer', 'step'], "
            "expected ['momentum_buffer', 'step']",
        ),
        (
            lambda s: s["state"][0].update(step=-1),
            LOAD + "parameter 0 has step=-1, expected an integer >= 0",
        ),
        (
            lambda s: s["state"][0].update(step=1.5),
            LOAD + "parameter 0 has step=1.5, expected an integer >= 0",
        ),
        (
            lambda s: s["state"][2].update(momentum_buffer=np.zeros((2, 3))),
            LOAD + "parameter 2 has 'momentum_buffer' of shape (2, 3), expected (2, 3, 2)",
        ),
        (
            lambda s: s["param_groups"][0].update(lr=-1.0),
            "SGD: invalid lr=-1.0, expected lr >= 0",
        ),
    ],
)
def test_load_state_dict_errors(edit, message):
    opt = _stepped_sgd()
    bad = opt.state_dict()
    edit(bad)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=exact(message)):
        opt.load_state_dict(bad)
    after = opt.state_dict()  # a failed load changes nothing
    assert after["param_groups"] == before["param_groups"]
    np.testing.assert_array_equal(
        after["state"][0]["momentum_buffer"], before["state"][0]["momentum_buffer"]
    )


def test_load_state_dict_requires_a_mapping():
    with pytest.raises(
        ValueError, match=r"SGD.load_state_dict: expected keys .*, got <class 'list'>"
    ):
        _stepped_sgd().load_state_dict([])


def test_load_state_dict_casts_to_parameter_dtype():
    opt = _stepped_sgd()
    state = opt.state_dict()
    params32 = [Parameter(p.data.astype(np.float32)) for p in opt.param_groups[0]["params"]]
    opt32 = SGD(params32, lr=0.1, momentum=0.9)
    opt32.load_state_dict(state)
    assert all(s["momentum_buffer"].dtype == np.float32 for s in opt32.state.values())


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: SGD(p, lr=-0.1),
            "SGD: invalid lr=-0.1, expected lr >= 0",
        ),
        (
            lambda p: SGD(p, momentum=-0.5),
            "SGD: invalid momentum=-0.5, expected momentum >= 0",
        ),
        (
            lambda p: SGD(p, momentum=0.9, dampening=1.5),
            "SGD: invalid dampening=1.5, expected 0 <= dampening <= 1",
        ),
        (
            lambda p: SGD(p, weight_decay=-1e-4),
            "SGD: invalid weight_decay=-0.0001, expected weight_decay >= 0",
        ),
        (
            lambda p: SGD(p, nesterov=True),
            "SGD: invalid nesterov=True, expected momentum > 0 and dampening = 0 "
            "(got momentum=0.0, dampening=0.0)",
        ),
        (
            lambda p: SGD(p, momentum=0.9, dampening=0.1, nesterov=True),
            "SGD: invalid nesterov=True, expected momentum > 0 and dampening = 0 "
            "(got momentum=0.9, dampening=0.1)",
        ),
        (
            lambda p: SGD([{"params": p, "lr": -1.0}]),
            "SGD: invalid lr=-1.0, expected lr >= 0",
        ),
        (
            lambda p: Adam(p, lr=-1e-3),
            "Adam: invalid lr=-0.001, expected lr >= 0",
        ),
        (
            lambda p: Adam(p, betas=(1.0, 0.999)),
            "Adam: invalid betas[0]=1.0, expected 0 <= betas[0] < 1",
        ),
        (
            lambda p: Adam(p, betas=(0.9, -0.1)),
            "Adam: invalid betas[1]=-0.1, expected 0 <= betas[1] < 1",
        ),
        (
            lambda p: Adam(p, betas=(0.9,)),
            "Adam: invalid betas=(0.9,), expected (beta1, beta2)",
        ),
        (
            lambda p: Adam(p, eps=-1e-8),
            "Adam: invalid eps=-1e-08, expected eps >= 0",
        ),
        (
            lambda p: Adam(p, weight_decay=-0.1),
            "Adam: invalid weight_decay=-0.1, expected weight_decay >= 0",
        ),
        (
            lambda p: AdamW(p, betas=(0.9, 1.0)),
            "AdamW: invalid betas[1]=1.0, expected 0 <= betas[1] < 1",
        ),
        (
            lambda p: AdamW(p, weight_decay=-0.01),
            "AdamW: invalid weight_decay=-0.01, expected weight_decay >= 0",
        ),
        (
            lambda p: RMSprop(p, lr=-0.01),
            "RMSprop: invalid lr=-0.01, expected lr >= 0",
        ),
        (
            lambda p: RMSprop(p, alpha=1.5),
            "RMSprop: invalid alpha=1.5, expected 0 <= alpha <= 1",
        ),
        (
            lambda p: RMSprop(p, eps=-1.0),
            "RMSprop: invalid eps=-1.0, expected eps >= 0",
        ),
        (
            lambda p: RMSprop(p, momentum=-0.9),
            "RMSprop: invalid momentum=-0.9, expected momentum >= 0",
        ),
        (
            lambda p: RMSprop(p, weight_decay=-1.0),
            "RMSprop: invalid weight_decay=-1.0, expected weight_decay >= 0",
        ),
        (
            lambda p: SGD([]),
            "SGD: got an empty parameter list",
        ),
        (
            lambda p: SGD(p + p[:1]),
            "SGD: a parameter appears more than once",
        ),
        (
            lambda p: SGD([{"params": p[:2]}, {"params": p[1:]}]),
            "SGD: a parameter appears more than once",
        ),
        (
            lambda p: SGD([{"lr": 0.1}]),
            "SGD: a parameter group must be a dict with a 'params' key, got {'lr': 0.1}",
        ),
    ],
)
def test_constructor_errors(make, message):
    with pytest.raises(ValueError, match=exact(message)):
        make(make_params(np.float64))


def test_constructor_type_errors():
    p = make_params(np.float64)
    with pytest.raises(
        TypeError, match="params must be a list of Parameter or of dicts, got a single Parameter"
    ):
        SGD(p[0])
    with pytest.raises(TypeError, match="SGD: params must be Parameter objects, got ndarray"):
        SGD([np.zeros(3)])


def test_add_param_group_validates():
    p = make_params(np.float64)
    opt = SGD(p[:2], lr=0.1)
    opt.add_param_group({"params": p[2:], "momentum": 0.9})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.1
    with pytest.raises(ValueError, match="SGD: invalid momentum=-1"):
        opt.add_param_group({"params": [Parameter(np.zeros(2))], "momentum": -1})


def test_base_optimizer_needs_update():
    opt = Optimizer(make_params(np.float64), dict(lr=0.1, weight_decay=0.0, maximize=False))
    with pytest.raises(NotImplementedError, match="Optimizer does not implement _update"):
        opt.step()


# ----------------------------------------------------------------------------- schedulers

SCHEDULERS = [
    ("StepLR", StepLR, dict(step_size=2, gamma=0.94)),
    ("StepLR", StepLR, dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", MultiStepLR, dict(milestones=[3, 8, 8, 15], gamma=0.3)),
    ("MultiStepLR", MultiStepLR, dict(milestones=[12, 4], gamma=0.1)),
    ("ExponentialLR", ExponentialLR, dict(gamma=0.9)),
    ("CosineAnnealingLR", CosineAnnealingLR, dict(T_max=7, eta_min=0.001)),
    ("CosineAnnealingLR", CosineAnnealingLR, dict(T_max=20)),
    ("CosineAnnealingLR", CosineAnnealingLR, dict(T_max=1, eta_min=0.01)),
]


def _sched_optimizers():
    params = make_params(np.float64)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
    ours = SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], lr=0.1)
    theirs = torch.optim.SGD([{"params": tparams[:2]}, {"params": tparams[2:], "lr": 0.02}], lr=0.1)
    return ours, theirs


def _lr_sequences(sched, tsched, topt, epochs=20):
    ours, theirs = [sched.get_last_lr()], [tsched.get_last_lr()]
    for _ in range(epochs):
        topt.step()  # no gradients: only silences torch's "scheduler before optimizer" warning
        sched.step()
        tsched.step()
        ours.append(sched.get_last_lr())
        theirs.append(tsched.get_last_lr())
        assert [g["lr"] for g in sched.optimizer.param_groups] == ours[-1]
    return np.array(ours), np.array(theirs)


@pytest.mark.parametrize(
    "name, cls, kwargs", SCHEDULERS, ids=[f"{name}-{kw}" for name, _, kw in SCHEDULERS]
)
def test_scheduler_matches_torch(name, cls, kwargs):
    opt, topt = _sched_optimizers()
    sched = cls(opt, **kwargs)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    ours, theirs = _lr_sequences(sched, tsched, topt)
    assert sched.last_epoch == tsched.last_epoch == 20
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("after", [None, "StepLR", "CosineAnnealingLR"])
@pytest.mark.parametrize("warmup_steps, start_factor", [(5, 0.1), (1, 0.5), (3, 1.0)])
def test_linear_warmup_matches_torch_linear_then_sequential(after, warmup_steps, start_factor):
    opt, topt = _sched_optimizers()
    after_kwargs = {"StepLR": dict(step_size=3, gamma=0.5), "CosineAnnealingLR": dict(T_max=10)}
    if after is None:
        sched = LinearWarmup(opt, warmup_steps, start_factor=start_factor)
        tsched = torch.optim.lr_scheduler.LinearLR(topt, start_factor, total_iters=warmup_steps)
    else:
        ours_after = {"StepLR": StepLR, "CosineAnnealingLR": CosineAnnealingLR}[after]
        sched = LinearWarmup(
            opt, warmup_steps, start_factor, after=ours_after(opt, **after_kwargs[after])
        )
        tsched = torch.optim.lr_scheduler.SequentialLR(
            topt,
            [
                torch.optim.lr_scheduler.LinearLR(topt, start_factor, total_iters=warmup_steps),
                getattr(torch.optim.lr_scheduler, after)(topt, **after_kwargs[after]),
            ],
            milestones=[warmup_steps],
        )
    ours, theirs = _lr_sequences(sched, tsched, topt)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    if after is not None:
        assert sched.after.last_epoch == 20 - warmup_steps


def test_xception_schedule_values():
    opt, _ = _sched_optimizers()
    sched = StepLR(opt, step_size=2, gamma=0.94)
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        sched.step()
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.094, 0.094, 0.08836, 0.08836])


@pytest.mark.parametrize(
    "make",
    [
        lambda o: StepLR(o, step_size=2, gamma=0.94),
        lambda o: CosineAnnealingLR(o, T_max=10, eta_min=0.001),
        lambda o: LinearWarmup(o, 4, 0.25, after=MultiStepLR(o, [3, 6], gamma=0.5)),
    ],
)
def test_scheduler_state_dict_round_trip(make):
    opt, _ = _sched_optimizers()
    sched = make(opt)
    straight = [sched.get_last_lr()]
    for _ in range(12):
        sched.step()
        straight.append(sched.get_last_lr())

    opt1, _ = _sched_optimizers()
    first = make(opt1)
    for _ in range(5):
        first.step()
    saved = flatten_round_trip(first.state_dict())
    opt_saved = flatten_round_trip(opt1.state_dict())

    opt2, _ = _sched_optimizers()
    resumed = make(opt2)
    resumed.load_state_dict(saved)  # either load order gives the same lrs
    opt2.load_state_dict(opt_saved)
    assert resumed.last_epoch == 5 and resumed.get_last_lr() == straight[5]
    assert [g["lr"] for g in opt2.param_groups] == straight[5]
    lrs = straight[:6]
    for _ in range(7):
        resumed.step()
        lrs.append(resumed.get_last_lr())
    assert lrs == straight


def test_get_last_lr_is_a_copy():
    opt, _ = _sched_optimizers()
    sched = ExponentialLR(opt, gamma=0.5)
    sched.get_last_lr().append(1.0)
    assert sched.get_last_lr() == [0.1, 0.02]
    assert opt.param_groups[0]["initial_lr"] == 0.1


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda o: StepLR(o, step_size=0),
            "StepLR: invalid step_size=0, expected int >= 1",
        ),
        (
            lambda o: StepLR(o, step_size=2.0),
            "StepLR: invalid step_size=2.0, expected int >= 1",
        ),
        (
            lambda o: StepLR(o, step_size=2, gamma=0.0),
            "StepLR: invalid gamma=0.0, expected gamma > 0",
        ),
        (
            lambda o: MultiStepLR(o, milestones=[5, 0]),
            "MultiStepLR: invalid milestones=[0, 5], expected ints >= 1",
        ),
        (
            lambda o: MultiStepLR(o, milestones=[2], gamma=-1),
            "MultiStepLR: invalid gamma=-1, expected gamma > 0",
        ),
        (
            lambda o: ExponentialLR(o, gamma=-0.5),
            "ExponentialLR: invalid gamma=-0.5, expected gamma > 0",
        ),
        (
            lambda o: CosineAnnealingLR(o, T_max=0),
            "CosineAnnealingLR: invalid T_max=0, expected int >= 1",
        ),
        (
            lambda o: CosineAnnealingLR(o, T_max=5, eta_min=-1e-3),
            "CosineAnnealingLR: invalid eta_min=-0.001, expected eta_min >= 0",
        ),
        (
            lambda o: LinearWarmup(o, warmup_steps=0),
            "LinearWarmup: invalid warmup_steps=0, expected int >= 1",
        ),
        (
            lambda o: LinearWarmup(o, 5, start_factor=0.0),
            "LinearWarmup: invalid start_factor=0.0, expected 0 < start_factor <= 1",
        ),
        (
            lambda o: LinearWarmup(o, 5, start_factor=1.5),
            "LinearWarmup: invalid start_factor=1.5, expected 0 < start_factor <= 1",
        ),
        (
            lambda o: LinearWarmup(o, 5, after=StepLR(_sched_optimizers()[0], 2)),
            "LinearWarmup: after must schedule the same optimizer",
        ),
    ],
)
def test_scheduler_constructor_errors(make, message):
    opt, _ = _sched_optimizers()
    with pytest.raises(ValueError, match=exact(message)):
        make(opt)


def test_scheduler_type_errors():
    opt, topt = _sched_optimizers()
    with pytest.raises(TypeError, match="^StepLR: optimizer must be an Optimizer, got SGD$"):
        StepLR(topt, step_size=2)
    with pytest.raises(
        TypeError, match="^LinearWarmup: after must be an LRScheduler or None, got str$"
    ):
        LinearWarmup(opt, 5, after="cosine")
    with pytest.raises(NotImplementedError, match="LRScheduler does not implement lr_at"):
        LRScheduler(opt)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s: s.pop("base_lrs"),
            "StepLR.load_state_dict: expected keys "
            "['base_lrs', 'last_epoch', 'last_lr'], got ['last_epoch', 'last_lr']",
        ),
        (
            lambda s: s["base_lrs"].pop(),
            "StepLR.load_state_dict: base_lrs has 1 entries, expected 2 (one per param group)",
        ),
        (
            lambda s: s["last_lr"].append(0.1),
            "StepLR.load_state_dict: last_lr has 3 entries, expected 2 (one per param group)",
        ),
        (
            lambda s: s.update(last_epoch=-3),
            "StepLR.load_state_dict: invalid last_epoch=-3, expected an int >= 0",
        ),
        (
            lambda s: s.update(last_epoch=2.0),
            "StepLR.load_state_dict: invalid last_epoch=2.0, expected an int >= 0",
        ),
    ],
)
def test_scheduler_load_state_dict_errors(edit, message):
    opt, _ = _sched_optimizers()
    sched = StepLR(opt, step_size=2)
    bad = sched.state_dict()
    edit(bad)
    with pytest.raises(ValueError, match=exact(message)):
        sched.load_state_dict(bad)
