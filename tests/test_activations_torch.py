"""The activations and Dropout2d against PyTorch, by hypothesis over shapes and arguments.

Inputs hold values at every kink of the function drawn (and the floats next to it, and 1e-3
away), so the derivative chosen at each kink is torch's; float64 agrees with torch to 1e-10,
float32 to rtol 1e-4. Gradient checks run in float64 away from the kinks. Dropout2d draws its
own masks: its statistics are checked, and its output and gradient equal torch's formula on the
same mask.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from checks import PARITY_TOL as TOL
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit.functional as F
from cnnkit import nn
from cnnkit.functional.modern_activation import _erf
from cnnkit.gradcheck import assert_gradcheck

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=25, deadline=None)
slopes = st.floats(-2, 2, allow_nan=False).map(lambda v: round(v, 3))


@st.composite
def hardtanh_bounds(draw):
    low = round(draw(st.floats(-4, 3.5)), 2)
    high = round(low + draw(st.floats(0.05, 4)), 2)
    return {"min_val": low, "max_val": high, "inplace": draw(st.booleans())}


@st.composite
def softplus_arguments(draw):
    beta = draw(st.sampled_from([-2.0, -0.5, 0.3, 1.0, 2.0, 5.0]))
    return {"beta": beta, "threshold": draw(st.sampled_from([-100.0, -1.0, 0.0, 2.5, 20.0]))}


def inplace():
    return st.fixed_dictionaries({"inplace": st.booleans()})


# name: (strategy for the constructor's keyword arguments, the kinks for those arguments)
SPECS = {
    "ReLU": (inplace(), lambda a: [0.0]),
    "LeakyReLU": (
        st.fixed_dictionaries({"negative_slope": slopes, "inplace": st.booleans()}),
        lambda a: [0.0],
    ),
    "ReLU6": (inplace(), lambda a: [0.0, 6.0]),
    "Hardtanh": (hardtanh_bounds(), lambda a: [a["min_val"], a["max_val"]]),
    "Hardsigmoid": (inplace(), lambda a: [-3.0, 3.0]),
    "Hardswish": (inplace(), lambda a: [-3.0, 3.0]),
    "SiLU": (inplace(), lambda a: []),
    "Mish": (inplace(), lambda a: []),
    "GELU": (st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])}), None),
    "ELU": (
        st.fixed_dictionaries({"alpha": slopes, "inplace": st.booleans()}),
        lambda a: [0.0],
    ),
    "Softplus": (softplus_arguments(), lambda a: [a["threshold"] / a["beta"]]),
    "Sigmoid": (st.just({}), None),
    "Tanh": (st.just({}), None),
}


def kinks_of(name, arguments):
    kinks = SPECS[name][1]
    return [] if kinks is None else kinks(arguments)


shapes = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)


def normal(rng, shape, dtype):
    """Standard normal values as an array of ``shape``, 0-D included."""
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def with_kinks(rng, shape, dtype, kinks, scale):
    """Normal values times ``scale``, with each kink, its float neighbours and kink +- 1e-3
    (and 0) written at random places."""
    x = np.asarray(rng.standard_normal(shape) * scale, dtype=dtype)
    specials = [dtype(0)]
    for kink in kinks:
        k = dtype(kink)
        specials += [k, np.nextafter(k, dtype(-np.inf)), np.nextafter(k, dtype(np.inf))]
        specials += [k - dtype(1e-3), k + dtype(1e-3)]
    flat = x.reshape(-1)
    count = min(flat.size, len(specials))
    flat[rng.choice(flat.size, count, replace=False)] = rng.permutation(specials)[:count]
    return x


def torch_module(name, arguments):
    """The torch module written out of place (the same function; torch's in-place ELU would
    differentiate through the output)."""
    return getattr(torch.nn, name)(**{k: v for k, v in arguments.items() if k != "inplace"})


def torch_forward_backward(module, x, dout):
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    yt.backward(torch.tensor(dout))
    return yt.detach().numpy(), xt.grad.numpy()


def close(ours, theirs, dtype, what):
    assert np.asarray(ours).dtype == dtype, f"{what}: dtype {np.asarray(ours).dtype}"
    assert np.shape(ours) == np.shape(theirs), f"{what}: {np.shape(ours)} vs {np.shape(theirs)}"
    np.testing.assert_allclose(ours, theirs, err_msg=what, **TOL[np.dtype(dtype)])


@pytest.mark.parametrize("name", list(SPECS))
@SETTINGS
@given(data=st.data())
def test_activation_equals_torch_at_and_around_its_kinks(name, data):
    arguments = data.draw(SPECS[name][0], label="arguments")
    dtype = data.draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    shape = data.draw(shapes, label="shape")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = with_kinks(rng, shape, dtype, kinks_of(name, arguments), rng.choice([0.5, 3.0, 10.0]))
    dout = normal(rng, shape, dtype)
    want, want_dx = torch_forward_backward(torch_module(name, arguments), x, dout)
    layer = getattr(nn, name)(**arguments)
    out = layer(x.copy())
    dx = layer.backward(dout)
    close(out, want, dtype, f"{name}{arguments} output")
    close(dx, want_dx, dtype, f"{name}{arguments} dL/dx")


@st.composite
def prelu_cases(draw):
    shape = draw(shapes)
    channels = shape[1] if len(shape) >= 2 else 1
    return shape, draw(st.sampled_from(sorted({1, channels})))


@SETTINGS
@given(
    case=prelu_cases(),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_prelu_output_input_and_weight_gradients_equal_torch(case, dtype, seed):
    shape, num_parameters = case
    rng = np.random.default_rng(seed)
    x = with_kinks(rng, shape, dtype, [0.0], 2.0)
    dout = normal(rng, shape, dtype)
    weight = rng.standard_normal(num_parameters).astype(dtype)
    layer = nn.PReLU(num_parameters, dtype=dtype)
    layer.weight.data[...] = weight
    reference = torch.nn.PReLU(num_parameters, dtype=torch.float64 if dtype == np.float64 else None)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(weight))
    want, want_dx = torch_forward_backward(reference, x, dout)
    out = layer(x)
    close(out, want, dtype, "PReLU output")
    close(layer.backward(dout), want_dx, dtype, "PReLU dL/dx")
    close(layer.weight.grad, reference.weight.grad.numpy(), dtype, "PReLU dL/dweight")
    layer(x)
    layer.backward(dout)
    close(layer.weight.grad, 2 * reference.weight.grad.numpy(), dtype, "accumulated dL/dweight")


def test_prelu_starts_at_init_and_registers_its_weight():
    layer = nn.PReLU(3, init=0.1, dtype=np.float64)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    np.testing.assert_array_equal(layer.weight.data, np.full(3, 0.1))
    np.testing.assert_array_equal(nn.PReLU().weight.data, torch.nn.PReLU().weight.detach())
    assert nn.PReLU().weight.dtype == np.float32


def away_from_kinks(x, kinks, gap=0.05):
    """Move every value within ``gap`` of a kink to ``2 * gap`` below the lowest kink (moving it
    to 2 * gap from its own kink could land it on another: Hardtanh(2.5, 2.6))."""
    if kinks:
        near = np.any([np.abs(x - kink) < gap for kink in kinks], axis=0)
        x[near] = min(kinks) - 2 * gap
    return x


@pytest.mark.parametrize("name", list(SPECS))
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_activation_gradcheck_in_float64_away_from_kinks(name, data):
    arguments = data.draw(SPECS[name][0], label="arguments")
    if "inplace" in arguments:
        arguments["inplace"] = False  # gradcheck calls the layer on its input many times
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    kinks = kinks_of(name, arguments)
    x = away_from_kinks(rng.uniform(-5, 5, (2, 3, 4)), kinks)
    assert_gradcheck(getattr(nn, name)(**arguments), x, max_per_array=None)


@pytest.mark.parametrize("num_parameters", [1, 3])
def test_prelu_gradcheck_input_and_weight(num_parameters, rng):
    layer = nn.PReLU(num_parameters, dtype=np.float64)
    layer.weight.data[...] = rng.standard_normal(num_parameters)
    x = away_from_kinks(rng.standard_normal((2, 3, 4, 2)), [0.0])
    assert_gradcheck(layer, x, max_per_array=None)


IN_PLACE_ARGUMENTS = {
    "ReLU": {},
    "LeakyReLU": {"negative_slope": -0.5},  # y > 0 where x < 0: the mask is taken from x
    "ReLU6": {},
    "Hardtanh": {"min_val": -0.5, "max_val": 2.0},
    "Hardsigmoid": {},
}


@pytest.mark.parametrize("name", sorted(IN_PLACE_ARGUMENTS))
def test_inplace_writes_the_output_into_the_input_and_backward_still_equals_torch(name, rng):
    arguments = {**IN_PLACE_ARGUMENTS[name], "inplace": True}
    x = with_kinks(rng, (3, 4, 5), np.float64, kinks_of(name, arguments), 4.0)
    dout = rng.standard_normal(x.shape)
    want, want_dx = torch_forward_backward(torch_module(name, arguments), x, dout)
    layer = getattr(nn, name)(**arguments)
    given_x, x = x, x.copy()
    out = layer(given_x)
    assert np.shares_memory(out, given_x)
    close(given_x, want, np.float64, f"{name} input after the call")
    close(layer.backward(dout), want_dx, np.float64, f"{name} dL/dx")
    torch_x = torch.tensor(x.copy())
    getattr(torch.nn, name)(**arguments)(torch_x)
    close(given_x, torch_x.numpy(), np.float64, f"{name} as torch's in-place call")


@pytest.mark.parametrize("name", sorted({"Hardswish", "SiLU", "Mish", "ELU"}))
def test_inplace_that_backward_cannot_spare_leaves_the_input_alone(name, rng):
    x = rng.standard_normal((3, 4)) * 4
    original = x.copy()
    layer = getattr(nn, name)(inplace=True)
    out = layer(x)
    assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, original)
    dout = rng.standard_normal(x.shape)
    want, want_dx = torch_forward_backward(getattr(torch.nn, name)(), original, dout)
    close(out, want, np.float64, f"{name} output")
    close(layer.backward(dout), want_dx, np.float64, f"{name} dL/dx")


def test_inplace_relu_writes_in_place_on_both_kernels(rng, monkeypatch):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    for enabled in (True, False):
        monkeypatch.setattr(F.activation._compiled, "ENABLED", enabled)
        given_x = x.copy()
        layer = nn.ReLU(inplace=True)
        assert layer(given_x) is given_x
        np.testing.assert_array_equal(given_x, np.maximum(x, 0))
        np.testing.assert_array_equal(layer.backward(np.ones_like(x)), (x > 0).astype(x.dtype))


LARGE = [-1e4, -800.0, -90.0, -30.0, -3.0, 0.0, 3.0, 30.0, 90.0, 800.0, 1e4]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "name", ["Hardswish", "Hardsigmoid", "SiLU", "Mish", "GELU", "ELU", "Softplus"]
)
def test_large_inputs_stay_finite_without_warnings_and_equal_torch(name, dtype, rng):
    x = np.array([LARGE], dtype=dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    for arguments in [{}, {"approximate": "tanh"}] if name == "GELU" else [{}]:
        layer = getattr(nn, name)(**arguments)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow / invalid-value RuntimeWarning
            out = layer(x)
            dx = layer.backward(dout)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))
        want, want_dx = torch_forward_backward(getattr(torch.nn, name)(**arguments), x, dout)
        close(out, want, dtype, f"{name} output")
        close(dx, want_dx, dtype, f"{name} dL/dx")


@pytest.mark.parametrize("name", [*SPECS, "PReLU"])
def test_nan_and_infinite_inputs_get_torchs_output_and_gradient(name, rng):
    x = np.array([np.nan, np.inf, -np.inf, 2.0, -2.0, 0.0])
    dout = rng.standard_normal(x.shape)
    layer = nn.PReLU(dtype=np.float64) if name == "PReLU" else getattr(nn, name)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inf - inf and the like, on both sides
        out = layer(x)
        dx = layer.backward(dout)
        want, want_dx = torch_forward_backward(getattr(torch.nn, name)().double(), x, dout)
    close(out, want, np.float64, f"{name} output")
    close(dx, want_dx, np.float64, f"{name} dL/dx")


def test_erf_is_accurate_to_a_few_ulps():
    x = np.concatenate(
        [np.linspace(-7, 7, 20001), np.geomspace(1e-300, 1, 300), [-0.0, 0.9999999, 1.0]]
    )
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(_erf(x), want, rtol=5e-16, atol=0)
    np.testing.assert_array_equal(_erf(np.array([np.inf, -np.inf, 30.0])), [1.0, -1.0, 1.0])
    assert np.isnan(_erf(np.array([np.nan])))[0]
    got32 = _erf(np.linspace(-5, 5, 1001, dtype=np.float32))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, [math.erf(v) for v in np.linspace(-5, 5, 1001)], atol=3e-7)


def test_the_derivative_at_each_kink_is_torchs():
    """Written out, the gradients torch gives at the kinks (float64)."""
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0, 6.0])
    cases = {
        "ReLU6": [0, 0, 0, 1, 1, 0],
        "Hardtanh": [0, 0, 1, 0, 0, 0],
        "Hardswish": [0, -1 / 3 + 0.5, 0.5, 1 / 3 + 0.5, 1, 1],
        "Hardsigmoid": [0] + [float(np.float32(1 / 6))] * 3 + [0, 0],
        "ELU": [math.exp(-3), math.exp(-1), 1, 1, 1, 1],
        "LeakyReLU": [0.01, 0.01, 0.01, 1, 1, 1],
        "ReLU": [0, 0, 0, 1, 1, 1],
    }
    for name, expected in cases.items():
        layer = getattr(nn, name)()
        layer(x)
        np.testing.assert_allclose(layer.backward(np.ones_like(x)), expected, rtol=1e-15)
        want = torch_forward_backward(getattr(torch.nn, name)(), x, np.ones_like(x))[1]
        np.testing.assert_array_equal(expected, want)


def test_reprs_equal_torchs():
    pairs = [
        ("ReLU", {"inplace": True}),
        ("LeakyReLU", {"negative_slope": 0.2, "inplace": True}),
        ("ReLU6", {"inplace": True}),
        ("Hardtanh", {"min_val": -2.0, "max_val": 2.0}),
        ("SiLU", {"inplace": True}),
        ("Mish", {}),
        ("GELU", {"approximate": "tanh"}),
        ("ELU", {"alpha": 2.0, "inplace": True}),
        ("Softplus", {"beta": 2.0, "threshold": 10.0}),
        ("PReLU", {"num_parameters": 3}),
        ("Dropout2d", {"p": 0.3, "inplace": True}),
        ("Dropout", {"p": 0.3}),
        ("Tanh", {}),
    ]
    for name, arguments in pairs:
        assert repr(getattr(nn, name)(**arguments)) == repr(getattr(torch.nn, name)(**arguments))


def test_modules_keep_their_arguments_under_torchs_attribute_names():
    layer = nn.Hardtanh(-2, 3)
    assert (layer.min_val, layer.max_val, layer.inplace) == (-2.0, 3.0, False)
    assert nn.Softplus(2).beta == 2.0 and nn.Softplus().threshold == 20.0
    assert nn.GELU().approximate == "none" and nn.ELU().alpha == 1.0
    layer = nn.LeakyReLU()
    layer.negative_slope = 0.5  # read at every call, as torch's
    np.testing.assert_array_equal(layer(np.array([-2.0, 2.0])), [-1.0, 2.0])


# --------------------------------------------------------------------------------------------
# Dropout2d
# --------------------------------------------------------------------------------------------


def channel_mask(out, x, p):
    """Which slices out[n, c] are kept, after checking that each is kept or dropped whole and
    that the kept ones are x / (1 - p)."""
    kept = (out != 0).reshape(x.shape[0] * x.shape[1], -1)
    np.testing.assert_array_equal(kept.min(axis=1), kept.max(axis=1))  # one mask per channel
    mask = kept[:, 0].reshape(x.shape[:2] + (1,) * (x.ndim - 2))
    np.testing.assert_allclose(out, x * mask / (1 - p), rtol=1e-6)
    return mask


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout2d_drops_whole_channels_at_rate_p_and_scales_by_1_over_1_minus_p(p, dtype, rng):
    x = rng.uniform(0.5, 1.5, (40, 50, 3, 4)).astype(dtype)
    layer = nn.Dropout2d(p, rng=np.random.default_rng(3))
    out = layer(x)
    kept = channel_mask(out, x, p)
    sigma = math.sqrt(p * (1 - p) / kept.size)
    assert abs(kept.mean() - (1 - p)) < 5 * sigma
    torch_out = torch.nn.Dropout2d(p)(torch.tensor(x)).numpy()
    torch_kept = channel_mask(torch_out, x, p).mean()
    assert abs(kept.mean() - torch_kept) < 10 * sigma
    dout = rng.standard_normal(x.shape).astype(dtype)
    mask = torch.tensor(kept.astype(dtype))
    xt = torch.tensor(x, requires_grad=True)
    yt = xt * mask / (1 - p)
    yt.backward(torch.tensor(dout))
    close(out, yt.detach().numpy(), dtype, "Dropout2d output")
    close(layer.backward(dout), xt.grad.numpy(), dtype, "Dropout2d dL/dx, the same mask")


@SETTINGS
@given(
    shape=st.tuples(*[st.integers(1, 4)] * 4),
    p=st.floats(0, 1),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**32 - 1),
    inplace=st.booleans(),
)
def test_dropout2d_backward_reuses_the_forward_mask(shape, p, dtype, seed, inplace):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 1.5, shape).astype(dtype)
    original = x.copy()
    layer = nn.Dropout2d(p, inplace=inplace, rng=rng)
    out = layer(x)
    if inplace or p > 0:  # p = 0 returns x itself, as eval mode does
        assert np.shares_memory(out, x) == inplace
    if p < 1:
        channel_mask(out, original, p)
    dout = normal(rng, shape, dtype)
    expected = dout * (out / original)
    np.testing.assert_allclose(layer.backward(dout), expected, **TOL[np.dtype(dtype)])


def test_dropout2d_eval_p0_and_p1(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    dout = rng.standard_normal(x.shape)
    layer = nn.Dropout2d(0.7, rng=rng).eval()
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(dout), dout)
    layer = nn.Dropout2d(0.0, rng=rng)
    np.testing.assert_array_equal(layer(x), torch.nn.Dropout2d(0.0)(torch.tensor(x)))
    np.testing.assert_array_equal(layer.backward(dout), dout)
    layer = nn.Dropout2d(1.0, rng=rng)
    np.testing.assert_array_equal(layer(x), torch.nn.Dropout2d(1.0)(torch.tensor(x)))
    np.testing.assert_array_equal(layer.backward(dout), np.zeros_like(dout))


def test_dropout2d_is_deterministic_given_a_generator(rng):
    x = rng.uniform(0.5, 1.5, (4, 8, 2, 2))
    first = nn.Dropout2d(rng=np.random.default_rng(5))(x)
    again = nn.Dropout2d(rng=np.random.default_rng(5))(x)
    other = nn.Dropout2d(rng=np.random.default_rng(6))(x)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_dropout2d_gradcheck_with_its_mask_fixed(rng):
    layer = nn.Dropout2d(0.4, rng=np.random.default_rng(2))
    assert_gradcheck(layer, rng.standard_normal((2, 4, 3, 3)), max_per_array=None)


@pytest.mark.parametrize("shape", [(6, 7, 5), (6, 7), (4, 5, 3, 2, 2)])
def test_functional_dropout2d_reads_other_ranks_as_n_c_rest_with_torchs_warning(shape, rng):
    """A 3-D input is (N, C, L) to torch 2.13's dropout2d, not an unbatched (C, H, W) image."""
    torch.manual_seed(0)  # some channels kept and some dropped, on both sides
    x = rng.uniform(0.5, 1.5, shape)
    with pytest.warns(UserWarning, match=rf"dropout2d received a {len(shape)}-D input"):
        out, _ = F.dropout2d(x, 0.5, rng)
    with pytest.warns(UserWarning, match="dropout2d"):
        torch_out = torch.nn.functional.dropout2d(torch.tensor(x), 0.5).numpy()
    for result in (out, torch_out):
        mask = channel_mask(result, x, 0.5)
        assert 0 < mask.sum() < mask.size
        if len(shape) == 3:  # x[0] is not one image: its mask differs along dim 1
            assert (mask.min(axis=1) != mask.max(axis=1)).any()


def test_dropout2d_module_reads_a_3d_input_as_n_c_l_and_refuses_the_ranks_torch_deprecates(rng):
    """torch.nn.Dropout2d takes 3-D input as (N, C, L) with a warning, as this does; 2-D and 5-D
    inputs, which torch warns will be errors, are refused already."""
    x = rng.uniform(0.5, 1.5, (6, 7, 5))
    with pytest.warns(UserWarning, match="dropout2d received a 3-D input"):
        out = nn.Dropout2d(0.5, rng=rng)(x)
    mask = channel_mask(out, x, 0.5)
    assert (mask.min(axis=1) != mask.max(axis=1)).any()
    for shape in [(6, 7), (2, 3, 4, 2, 2)]:
        with pytest.raises(ValueError, match=r"Dropout2d expected \(N, C, H, W\) or \(N, C, L\)"):
            nn.Dropout2d()(np.zeros(shape))


def test_dropout_inplace_writes_into_the_input(rng):
    x = rng.uniform(0.5, 1.5, (5, 6))
    original = x.copy()
    layer = nn.Dropout(0.5, inplace=True, rng=rng)
    out = layer(x)
    assert out is x
    kept = out != 0
    np.testing.assert_allclose(out[kept], 2 * original[kept])
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), 2.0 * kept)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------

X = np.zeros((2, 4, 5), np.float64)
ERRORS = [
    ("hardtanh_bounds", lambda: nn.Hardtanh(2.0, 1.0), ValueError,
     r"^Hardtanh max_val must be greater than min_val, got min_val=2.0, max_val=1.0$"),
    ("hardtanh_equal_bounds", lambda: nn.Hardtanh(1, 1), ValueError,
     r"^Hardtanh max_val must be greater than min_val, got min_val=1, max_val=1$"),
    ("functional_hardtanh_bounds", lambda: F.hardtanh(X, 1, -1), ValueError,
     r"^hardtanh min_val must be <= max_val, got min_val=1.0, max_val=-1.0$"),
    ("hardtanh_string", lambda: nn.Hardtanh("a"), TypeError,
     r"^Hardtanh min_val must be a finite number, got 'a'$"),
    ("gelu_approximate", lambda: nn.GELU("exact"), ValueError,
     r"^GELU approximate must be 'none' or 'tanh', got 'exact'$"),
    ("functional_gelu_approximate", lambda: F.gelu(X, None), ValueError,
     r"^gelu approximate must be 'none' or 'tanh', got None$"),
    ("prelu_channels", lambda: nn.PReLU(3, dtype=np.float64)(X), ValueError,
     r"^prelu expected input with 3 channels on axis 1 \(one per slope; an input of fewer "
     r"than 2 dimensions has one channel\), got input shape \(2, 4, 5\)$"),
    ("prelu_channels_1d", lambda: nn.PReLU(3, dtype=np.float64)(np.zeros(3)), ValueError,
     r"^prelu expected input with 3 channels on axis 1 .* got input shape \(3,\)$"),
    ("functional_prelu_weight_2d", lambda: F.prelu(X, np.zeros((1, 4))), ValueError,
     r"^prelu expected a 1-D weight, got shape \(1, 4\)$"),
    ("functional_prelu_dtypes", lambda: F.prelu(X, np.zeros(4, np.float32)), TypeError,
     r"^prelu expected input and weight of one dtype, got float64 and float32$"),
    ("prelu_input_dtype", lambda: nn.PReLU()(X), TypeError,
     r"^PReLU expected input of dtype float32, got float64"),
    ("prelu_num_parameters", lambda: nn.PReLU(0), ValueError,
     r"^PReLU num_parameters must be at least 1, got 0$"),
    ("prelu_init", lambda: nn.PReLU(init="0.25"), TypeError,
     r"^PReLU init must be a finite number, got '0.25'$"),
    ("prelu_dtype", lambda: nn.PReLU(dtype=np.int32), TypeError,
     r"^dtype must be float32 or float64, got int32$"),
    ("softplus_beta_zero", lambda: nn.Softplus(0), ValueError,
     r"^Softplus beta must be non-zero, got 0$"),
    ("softplus_threshold", lambda: nn.Softplus(threshold=None), TypeError,
     r"^Softplus threshold must be a finite number, got None$"),
    ("elu_alpha", lambda: nn.ELU(alpha=True), TypeError,
     r"^ELU alpha must be a finite number, got True$"),
    ("leaky_relu_slope", lambda: nn.LeakyReLU([0.1]), TypeError,
     r"^LeakyReLU negative_slope must be a number, got \[0.1\]$"),
    ("relu6_inplace", lambda: nn.ReLU6(inplace="yes"), TypeError,
     r"^ReLU6 inplace must be a bool, got 'yes'$"),
    ("mish_inplace", lambda: nn.Mish(1), TypeError, r"^Mish inplace must be a bool, got 1$"),
    ("silu_input_type", lambda: nn.SiLU()([1.0]), TypeError,
     r"^SiLU expected a numpy.ndarray, got list$"),
    ("hardswish_input_dtype", lambda: nn.Hardswish()(np.zeros(3, np.int64)), TypeError,
     r"^Hardswish expected input of dtype float32 or float64, got int64$"),
    ("dropout2d_p_above_one", lambda: nn.Dropout2d(1.5), ValueError,
     r"^Dropout2d probability p must be in \[0, 1\], got 1.5$"),
    ("dropout2d_p_negative", lambda: nn.Dropout2d(-0.1), ValueError,
     r"^Dropout2d probability p must be in \[0, 1\], got -0.1$"),
    ("functional_dropout2d_p", lambda: F.dropout2d(X, 2, np.random.default_rng()), ValueError,
     r"^dropout2d probability p must be in \[0, 1\], got 2$"),
    ("dropout_p", lambda: nn.Dropout(1.01), ValueError,
     r"^Dropout probability p must be in \[0, 1\], got 1.01$"),
    ("dropout2d_1d_input", lambda: nn.Dropout2d()(np.zeros(3)), ValueError,
     r"^Dropout2d expected \(N, C, H, W\) or \(N, C, L\) input, got \(3,\)$"),
    ("functional_dropout2d_1d_input",
     lambda: F.dropout2d(np.zeros(3), 0.5, np.random.default_rng()), ValueError,
     r"^dropout2d expected input with at least 2 dimensions \(N, C, \.\.\.\), got shape \(3,\)$"),
    ("dropout2d_inplace", lambda: nn.Dropout2d(inplace=None), TypeError,
     r"^Dropout2d inplace must be a bool, got None$"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "exception", "pattern"), [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])  # fmt: skip
def test_error_messages(call, exception, pattern):
    with pytest.raises(exception, match=pattern) as info:
        call()
    assert type(info.value) is exception


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: nn.Hardtanh(2.0, 1.0), lambda: torch.nn.Hardtanh(2.0, 1.0)),
        (lambda: nn.Hardtanh(1.0, 1.0), lambda: torch.nn.Hardtanh(1.0, 1.0)),
        (
            lambda: F.hardtanh(X, 1.0, -1.0),
            lambda: torch.nn.functional.hardtanh(torch.tensor(X), 1.0, -1.0),
        ),
        (lambda: nn.GELU("exact")(X), lambda: torch.nn.GELU("exact")(torch.tensor(X))),
        (lambda: nn.PReLU(3, dtype=np.float64)(X), lambda: torch.nn.PReLU(3)(torch.zeros(2, 4))),
        (lambda: nn.Dropout2d(1.5), lambda: torch.nn.Dropout2d(1.5)),
        (lambda: nn.Dropout2d()(np.zeros(3)), lambda: torch.nn.Dropout2d()(torch.zeros(3))),
    ],
    ids=[
        "hardtanh_bounds",
        "hardtanh_equal",
        "functional_hardtanh",
        "gelu_approximate",
        "prelu_channels",
        "dropout2d_p",
        "dropout2d_1d",
    ],
)
def test_what_we_reject_torch_rejects_too(ours, theirs):
    with pytest.raises((ValueError, TypeError)):
        ours()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, TypeError, RuntimeError, AssertionError)):
            theirs()


@pytest.mark.parametrize("compiled", [True, False])
def test_relu_backward_gives_torchs_gradient_for_nan_and_infinite_values(compiled, monkeypatch):
    """torch's ReLU backward passes dL/dy where not x <= 0 (a NaN input included) and gives +0
    elsewhere, also where dL/dy is inf or NaN; no RuntimeWarning on the way."""
    monkeypatch.setattr(F.activation._compiled, "ENABLED", compiled)
    x = np.array([np.nan, np.nan, -1.0, -1.0, -1.0, 0.0, 2.0, 2.0, np.inf, -np.inf])
    dout = np.array([1.5, np.inf, np.inf, np.nan, -1.0, -np.inf, np.nan, 3.0, 1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer = nn.ReLU()
        out = layer(x)
        dx = layer.backward(dout)
    want, want_dx = torch_forward_backward(torch.nn.ReLU(), x, dout)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(dx, want_dx)
    np.testing.assert_array_equal(np.signbit(dx), np.signbit(want_dx))
