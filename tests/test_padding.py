"""pad2d in its four modes, the five padding layers and Conv1d/Conv2d's padding_mode, against
torch (float64 to 1e-10, float32 to rtol 1e-4), numerical gradient checks, and every error.

Hypothesis draws the input shape and each of the four sides independently, negative (cropping)
included, within the ranges torch accepts for the mode (written out here apart from cnnkit):
reflect needs each side below the axis size, circular at most the size left after cropping,
constant and circular may crop at most the whole axis, and every output axis is non-empty.
"""

from __future__ import annotations

import numpy as np
import pytest
from checks import error_message_test
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnkit.functional as F
import cnnkit.nn as nn
from cnnkit.gradcheck import gradcheck

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.usefixtures("torch_single_thread"),
    # torch's note that its 'same' padding of an even kernel copies the input
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning"),
]
TF = torch.nn.functional

SETTINGS = settings(max_examples=25, deadline=None)
MODES = ["constant", "reflect", "replicate", "circular"]
MODULES = {
    "constant": ("ConstantPad2d", (2.5,)),
    "zeros": ("ZeroPad2d", ()),
    "reflect": ("ReflectionPad2d", ()),
    "replicate": ("ReplicationPad2d", ()),
    "circular": ("CircularPad2d", ()),
}
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def close(ours, theirs, dtype, what):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.dtype == dtype, what
    assert ours.shape == theirs.shape, f"{what}: {ours.shape} vs torch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, err_msg=what, **TOL[dtype])


def accepted(mode, size, before, after):
    """Whether torch pads an axis of ``size`` by (before, after) in ``mode`` (and it is kept)."""
    kept = size - max(-before, 0) - max(-after, 0)
    if size + before + after < 1:
        return False
    if mode == "reflect":
        return max(before, after) < size
    if mode == "circular":
        return kept >= 1 and max(before, after) <= kept
    return mode == "replicate" or kept >= 0


@st.composite
def pad_configs(draw, modes=MODES):
    mode = draw(st.sampled_from(modes))
    shape = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 3)),
        *draw(st.tuples(*[st.integers(1, 6)] * 2)),
    )
    sides = draw(st.tuples(*[st.integers(-3, 5)] * 4))
    assume(accepted(mode, shape[3], sides[0], sides[1]))
    assume(accepted(mode, shape[2], sides[2], sides[3]))
    return mode, shape, sides, draw(st.integers(0, 2**32 - 1))


def torch_pad(x, sides, mode, value=None):
    xt = torch.tensor(x, requires_grad=True)
    return xt, TF.pad(xt, sides, mode=mode, value=value)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@SETTINGS
@given(config=pad_configs())
def test_pad2d_matches_torch(dtype, config):
    mode, shape, sides, seed = config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    value = 1.5 if mode == "constant" else None
    out, cache = F.pad2d(x, sides, mode, value)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = F.pad2d_backward(dout, cache)
    xt, yt = torch_pad(x, sides, mode, value)
    yt.backward(torch.tensor(dout))
    close(out, yt, dtype, f"pad2d {mode} {sides} output")
    close(dx, xt.grad, dtype, f"pad2d {mode} {sides} dL/dx")


@pytest.mark.parametrize("mode", MODES)
def test_borders_accumulate_onto_their_source_pixels(mode):
    """A row of 0..3 padded by 2 on both sides: each input's gradient counts its readers."""
    x = np.arange(4.0).reshape(1, 1, 1, 4)
    out, cache = F.pad2d(x, (2, 2, 0, 0), mode)
    readers = F.pad2d_backward(np.ones_like(out), cache)[0, 0, 0]
    expected = {
        "constant": [1, 1, 1, 1],
        "reflect": [1, 3, 3, 1],  # 2 1 | 0 1 2 3 | 2 1
        "replicate": [3, 1, 1, 3],  # 0 0 | 0 1 2 3 | 3 3
        "circular": [2, 2, 2, 2],  # 2 3 | 0 1 2 3 | 0 1
    }[mode]
    np.testing.assert_array_equal(readers, expected)


@pytest.mark.parametrize("kind", sorted(MODULES))
@pytest.mark.parametrize("padding", [1, (1, 2, 3, 0), (2, -1, 0, 1)])
@pytest.mark.parametrize("batched", [True, False])
def test_padding_layers_match_torch(kind, padding, batched, rng):
    name, extra = MODULES[kind]
    ours, theirs = getattr(nn, name)(padding, *extra), getattr(torch.nn, name)(padding, *extra)
    shape = (2, 3, 4, 5) if batched else (3, 4, 5)
    x = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    out = ours(x)
    dout = rng.standard_normal(out.shape)
    yt.backward(torch.tensor(dout))
    close(out, yt, np.float64, f"{name}({padding}) output")
    close(ours.backward(dout), xt.grad, np.float64, f"{name}({padding}) dL/dx")
    assert repr(ours) == repr(theirs)
    assert ours.compute_output_shape(x.shape) == out.shape


@pytest.mark.parametrize("mode", MODES)
def test_pad2d_gradcheck(mode, rng):
    x = rng.standard_normal((2, 2, 4, 3))
    sides = (2, -1, 1, 3)  # within every mode's limits for 4 rows and 3 columns
    report = gradcheck((lambda v: F.pad2d(v, sides, mode), F.pad2d_backward), x, max_per_array=None)
    assert report.checked == x.size
    assert report.passed, str(report)


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_padding_layer_gradcheck(kind, rng):
    name, extra = MODULES[kind]
    report = gradcheck(getattr(nn, name)((1, 2, 2, 1), *extra), rng.standard_normal((3, 3, 4)))
    assert report.passed, str(report)


@SETTINGS
@given(
    mode=st.sampled_from(["reflect", "replicate", "circular"]),
    dims=st.sampled_from([1, 2]),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    padding=st.sampled_from([0, 1, 2, "same", "valid"]),
    size=st.integers(3, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_padding_mode_matches_torch(mode, dims, kernel, stride, dilation, padding, size, seed):
    """Conv1d and Conv2d with padding_mode != 'zeros': forward, dL/dx, dL/dweight, dL/dbias."""
    if padding == "same":
        stride = 1  # torch has no strided 'same'
    assume(dilation * (kernel - 1) + 1 <= size + 2 * (padding if isinstance(padding, int) else 0))
    rng = np.random.default_rng(seed)
    name = f"Conv{dims}d"
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=mode)
    theirs = getattr(torch.nn, name)(2, 3, kernel, **kwargs).double()
    ours = getattr(nn, name)(2, 3, kernel, dtype=np.float64, **kwargs)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((2, 2, *(size,) * dims))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    out = ours(x)
    dout = rng.standard_normal(out.shape)
    yt.backward(torch.tensor(dout))
    what = f"{name} {kwargs} kernel {kernel}"
    close(out, yt, np.float64, f"{what} output")
    close(ours.backward(dout), xt.grad, np.float64, f"{what} dL/dx")
    close(ours.weight.grad, theirs.weight.grad, np.float64, f"{what} dL/dweight")
    close(ours.bias.grad, theirs.bias.grad, np.float64, f"{what} dL/dbias")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_mode_gradcheck_and_repr(mode, rng):
    conv = nn.Conv2d(2, 2, 3, padding=(1, 2), padding_mode=mode, dtype=np.float64, rng=rng)
    report = gradcheck(conv, rng.standard_normal((1, 2, 4, 5)), max_per_array=40)
    assert report.passed, str(report)
    assert repr(conv) == (
        f"Conv2d(2, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 2), padding_mode={mode!r})"
    )


def test_padding_mode_skips_the_input_gradient_of_a_first_layer(rng):
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype=np.float64, rng=rng)
    conv.input_gradient = False
    out = conv(rng.standard_normal((2, 2, 5, 5)))
    assert conv.backward(np.ones_like(out)) is None
    assert np.abs(conv.weight.grad).sum() > 0


X = np.zeros((1, 2, 3, 4))

# (id, call, exception, regular expression the one-line message must match)
CASES = [
    (
        "padding_float",
        lambda: F.pad2d(X, 1.5),
        TypeError,
        r"pad2d padding must be an int or a 4-tuple \(left, right, top, bottom\) of ints, got 1.5",
    ),
    (
        "padding_pair",
        lambda: nn.ReflectionPad2d((1, 2)),
        TypeError,
        r"ReflectionPad2d padding must be an int or a 4-tuple .*got \(1, 2\)",
    ),
    (
        "padding_bool",
        lambda: nn.ZeroPad2d(True),
        TypeError,
        r"ZeroPad2d padding must be an int or a 4-tuple .*got True",
    ),
    (
        "mode",
        lambda: F.pad2d(X, 1, "symmetric"),
        ValueError,
        r"pad2d mode must be 'constant', 'reflect', 'replicate' or 'circular', got 'symmetric'",
    ),
    (
        "value_with_reflect",
        lambda: F.pad2d(X, 1, "reflect", 0.0),
        ValueError,
        r"pad2d value is only used by mode 'constant', got 0.0 with 'reflect'",
    ),
    (
        "constant_value_string",
        lambda: nn.ConstantPad2d(1, "0"),
        TypeError,
        r"ConstantPad2d value must be a real number, got '0'",
    ),
    (
        "reflect_too_wide",
        lambda: nn.ReflectionPad2d((0, 4, 0, 0))(X),
        ValueError,
        r"pad2d reflect padding \(0, 4\) of the 4 columns of input shape \(1, 2, 3, 4\): each side "
        r"must be less than 4",
    ),
    (
        "reflect_too_tall",
        lambda: F.pad2d(X, (0, 0, 3, 0), "reflect"),
        ValueError,
        r"pad2d reflect padding \(3, 0\) of the 3 rows .*each side must be less than 3",
    ),
    (
        "circular_wraps_twice",
        lambda: nn.CircularPad2d((5, 0, 0, 0))(X),
        ValueError,
        r"pad2d circular padding \(5, 0\) of the 4 columns .*wraps around more than once: each "
        r"side must be at most the 4 columns left after cropping",
    ),
    (
        "circular_wraps_cropped",
        lambda: F.pad2d(X, (0, 0, 2, -2), "circular"),
        ValueError,
        r"pad2d circular padding \(2, -2\) of the 3 rows .*at most the 1 rows left after cropping",
    ),
    (
        "constant_crops_too_much",
        lambda: nn.ZeroPad2d((-3, -2, 0, 0))(X),
        ValueError,
        r"pad2d padding \(-3, -2\) of the 4 columns of input shape \(1, 2, 3, 4\) crops more "
        r"than the input holds",
    ),
    (
        "constant_crops_one_side_past",
        lambda: F.pad2d(X, (0, 0, -4, 2)),
        ValueError,
        r"pad2d padding \(-4, 2\) of the 3 rows .*crops more than the input holds",
    ),
    (
        "reflect_crops_too_much",
        lambda: F.pad2d(X, (0, 0, -2, -2), "reflect"),
        ValueError,
        r"pad2d padding \(-2, -2\) of the 3 rows .*crops more than the input holds",
    ),
    (
        "replicate_empty",
        lambda: F.pad2d(np.zeros((1, 1, 0, 3)), 1, "replicate"),
        ValueError,
        r"pad2d mode 'replicate' needs a non-empty input, got shape \(1, 1, 0, 3\)",
    ),
    (
        "functional_1d",
        lambda: F.pad2d(np.zeros(3), 1),
        ValueError,
        r"pad2d expected input with at least 2 dimensions, got shape \(3,\)",
    ),
    (
        "functional_list",
        lambda: F.pad2d([[1.0]], 1),
        TypeError,
        r"pad2d expected a numpy.ndarray, got list",
    ),
    (
        "functional_int_dtype",
        lambda: F.pad2d(np.zeros((2, 2), np.int64), 1),
        TypeError,
        r"pad2d expected input of dtype float32 or float64, got int64",
    ),
    (
        "module_5d",
        lambda: nn.ReplicationPad2d(1)(np.zeros((1, 1, 1, 2, 2))),
        ValueError,
        r"ReplicationPad2d expected 3-D \(C, H, W\) or 4-D \(N, C, H, W\) input, got shape "
        r"\(1, 1, 1, 2, 2\)",
    ),
    (
        "module_2d",
        lambda: nn.ZeroPad2d(1)(np.zeros((2, 2))),
        ValueError,
        r"ZeroPad2d expected 3-D \(C, H, W\) or 4-D \(N, C, H, W\) input, got shape \(2, 2\)",
    ),
    (
        "backward_shape",
        lambda: F.pad2d_backward(np.zeros((1, 2, 3, 4)), F.pad2d(X, 1)[1]),
        ValueError,
        r"pad2d_backward expected dout of shape \(1, 2, 5, 6\), got \(1, 2, 3, 4\)",
    ),
    (
        "conv_padding_mode",
        lambda: nn.Conv2d(2, 2, 3, padding_mode="symmetric"),
        ValueError,
        r"Conv2d padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', got "
        r"'symmetric'",
    ),
    (
        "conv1d_padding_mode",
        lambda: nn.Conv1d(2, 2, 3, padding_mode="zero"),
        ValueError,
        r"Conv1d padding_mode must be one of 'zeros', .*got 'zero'",
    ),
    (
        "conv_reflect_too_wide",
        lambda: nn.Conv2d(2, 2, 3, padding=3, padding_mode="reflect", dtype=X.dtype)(X),
        ValueError,
        r"pad2d reflect padding \(3, 3\) of the 3 rows .*each side must be less than 3",
    ),
]


test_error_messages = error_message_test(CASES)


@pytest.mark.parametrize(
    ("sides", "mode"),
    [((0, 4, 0, 0), "reflect"), ((5, 0, 0, 0), "circular"), ((0, 0, -3, -2), "reflect")],
)
def test_torch_refuses_the_same_paddings(sides, mode):
    """The padding errors above are ones torch raises too, not stricter rules of cnnkit's."""
    with pytest.raises((RuntimeError, ValueError)):
        TF.pad(torch.zeros(X.shape), sides, mode=mode)
