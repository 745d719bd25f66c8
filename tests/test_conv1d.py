"""Conv1d (Conv2d's kernels on images of height 1) against torch.nn.Conv1d: forward, dL/dx,
dL/dweight, dL/dbias in float64 and float32, unbatched input, gradchecks, repr, every error.

Hypothesis draws the batch, groups, channels, kernel, stride, padding (int, 1-tuple, 'valid',
'same' at stride 1 as torch allows), dilation, length, bias and padding_mode; configurations
whose dilated kernel does not fit the padded input are discarded with ``assume``.
"""

from __future__ import annotations

import numpy as np
import pytest
from checks import close, error_message_test
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnkit.nn as nn
from cnnkit.gradcheck import gradcheck

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.usefixtures("torch_single_thread"),
    # torch's note that its 'same' padding of an even kernel copies the input
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning"),
]


def pair_of(dtype, rng, **kwargs):
    """A torch Conv1d (its own initialisation) and the cnnkit Conv1d with its state dict."""
    theirs = torch.nn.Conv1d(**kwargs).to(
        {np.float64: torch.float64, np.float32: torch.float32}[dtype]
    )
    ours = nn.Conv1d(**kwargs, dtype=dtype, rng=rng)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


@st.composite
def configs(draw):
    groups = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["int", "tuple", "valid"] + (["same"] if stride == 1 else [])))
    if padding == "int":
        padding = draw(st.integers(0, 3))
    elif padding == "tuple":
        padding = (draw(st.integers(0, 3)),)
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    kwargs = dict(
        in_channels=groups * draw(st.integers(1, 3)),
        out_channels=groups * draw(st.integers(1, 3)),
        kernel_size=draw(st.integers(1, 4)),
        stride=stride,
        padding=padding,
        dilation=draw(st.integers(1, 3)),
        groups=groups,
        bias=draw(st.booleans()),
        padding_mode=padding_mode,
    )
    length = draw(st.integers(1, 9))
    explicit = padding[0] if isinstance(padding, tuple) else padding
    explicit = explicit if isinstance(explicit, int) else 0
    reach = kwargs["dilation"] * (kwargs["kernel_size"] - 1) + 1
    assume(reach <= length + 2 * explicit)
    if padding_mode == "reflect":
        assume(explicit < length and (padding != "same" or reach <= length))
    if padding_mode == "circular":
        assume(explicit <= length and (padding != "same" or reach <= length + 1))
    return kwargs, draw(st.integers(1, 3)), length, draw(st.integers(0, 2**32 - 1))


def compare(config, dtype, batched=True):
    kwargs, n, length, seed = config
    rng = np.random.default_rng(seed)
    ours, theirs = pair_of(dtype, rng, **kwargs)
    shape = (n, kwargs["in_channels"], length) if batched else (kwargs["in_channels"], length)
    x = rng.standard_normal(shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    out = ours(x)
    dout = rng.standard_normal(out.shape).astype(dtype)
    yt.backward(torch.tensor(dout))
    close(out, yt, dtype, f"Conv1d {kwargs} output")
    close(ours.backward(dout), xt.grad, dtype, f"Conv1d {kwargs} dL/dx")
    close(ours.weight.grad, theirs.weight.grad, dtype, f"Conv1d {kwargs} dL/dweight")
    if kwargs["bias"]:
        close(ours.bias.grad, theirs.bias.grad, dtype, f"Conv1d {kwargs} dL/dbias")


@settings(max_examples=50, deadline=None)
@given(configs())
def test_conv1d_matches_torch_float64(config):
    compare(config, np.float64)


@settings(max_examples=25, deadline=None)
@given(configs(), st.booleans())
def test_conv1d_matches_torch_float32_batched_or_not(config, batched):
    compare(config, np.float32, batched)


def test_conv1d_gradcheck(rng):
    conv = nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, dtype=np.float64, rng=rng)
    report = gradcheck(conv, rng.standard_normal((2, 4, 9)), max_per_array=60)
    assert report.passed, str(report)


def test_conv1d_init_shapes_repr_and_output_shape(rng):
    conv = nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2, rng=rng)
    theirs = torch.nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2)
    assert conv.weight.shape == tuple(theirs.weight.shape) == (6, 2, 3)
    bound = 1 / np.sqrt(2 * 3)  # torch's kaiming_uniform_(a=sqrt(5)) bound, fan_in = 2 * 3
    assert np.abs(conv.weight.data).max() <= bound
    assert np.abs(conv.bias.data).max() <= bound
    assert repr(conv) == repr(theirs)
    assert list(conv.state_dict()) == list(theirs.state_dict())
    x = rng.standard_normal((2, 4, 11)).astype(np.float32)
    assert conv.compute_output_shape(x.shape) == conv(x).shape == (2, 6, 6)
    assert nn.Conv1d(4, 6, 4, padding="same").compute_output_shape((1, 4, 7)) == (1, 6, 7)


X = np.zeros((1, 3, 5), np.float32)

# (id, call, exception, regular expression the one-line message must match)
CASES = [
    ("kernel_pair", lambda: nn.Conv1d(3, 4, (3, 3)), TypeError,
     r"kernel_size must be an int or a 1-tuple of ints, got \(3, 3\)"),
    ("kernel_zero", lambda: nn.Conv1d(3, 4, 0), ValueError, r"kernel_size must be >= 1, got 0"),
    ("stride_float", lambda: nn.Conv1d(3, 4, 3, stride=1.5), TypeError,
     r"stride must be an int or a 1-tuple of ints, got 1.5"),
    ("dilation_zero", lambda: nn.Conv1d(3, 4, 3, dilation=(0,)), ValueError,
     r"dilation must be >= 1, got 0"),
    ("padding_negative", lambda: nn.Conv1d(3, 4, 3, padding=-1), ValueError,
     r"padding must be >= 0, got -1"),
    ("padding_string", lambda: nn.Conv1d(3, 4, 3, padding="full"), ValueError,
     r"Conv1d padding must be an int, a 1-tuple, 'same' or 'valid', got 'full'"),
    ("groups_not_dividing", lambda: nn.Conv1d(3, 4, 3, groups=2), ValueError,
     r"Conv1d groups=2 must divide in_channels=3 and out_channels=4"),
    ("out_channels_zero", lambda: nn.Conv1d(3, 0, 3), ValueError,
     r"Conv1d out_channels must be a positive int, got 0"),
    ("input_4d", lambda: nn.Conv1d(3, 4, 3)(np.zeros((1, 3, 5, 5), np.float32)), ValueError,
     r"Conv1d expected 3-D input \(N, C, L\), got shape \(1, 3, 5, 5\)"),
    ("wrong_channels", lambda: nn.Conv1d(2, 4, 3)(X), ValueError,
     r"Conv1d expected input with 2 channels, got 3 \(input shape \(1, 3, 5\)\)"),
    ("kernel_longer_than_input", lambda: nn.Conv1d(3, 4, 7)(X), ValueError,
     r"kernel \(1, 7\) .*larger than the padded input \(1, 5\)"),
    ("dtype", lambda: nn.Conv1d(3, 4, 3)(X.astype(np.float64)), TypeError,
     r"Conv1d expected input of dtype float32, got float64"),
]  # fmt: skip


test_error_messages = error_message_test(CASES)
