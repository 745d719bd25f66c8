"""conv_transpose2d and ConvTranspose2d against torch (forward, dL/dx, dL/dweight, dL/dbias),
numerical gradient checks, output_size, the NumPy and compiled col2im, and every error.

Hypothesis draws the batch, groups, channels, kH and kW, stride, padding, dilation,
output_padding (below the stride or the dilation, as torch requires), H != W and bias;
configurations whose output would be empty are discarded with ``assume``.
"""

from __future__ import annotations

import numpy as np
import pytest
from checks import close, error_message_test
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnkit.functional as F
import cnnkit.nn as nn
from cnnkit.functional import _compiled
from cnnkit.gradcheck import gradcheck

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")
TF = torch.nn.functional


def pairs(low, high):
    return st.tuples(st.integers(low, high), st.integers(low, high))


@st.composite
def configs(draw):
    groups = draw(st.integers(1, 3))
    stride, dilation = draw(pairs(1, 3)), draw(pairs(1, 2))
    output_padding = tuple(draw(st.integers(0, max(stride[i], dilation[i]) - 1)) for i in (0, 1))
    config = dict(
        n=draw(st.integers(1, 2)),
        cin=groups * draw(st.integers(1, 3)),
        cout=groups * draw(st.integers(1, 3)),
        groups=groups,
        kernel=draw(pairs(1, 4)),
        stride=stride,
        padding=draw(pairs(0, 3)),
        output_padding=output_padding,
        dilation=dilation,
        hw=draw(pairs(1, 6)),
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
    for i in (0, 1):
        full = (config["hw"][i] - 1) * stride[i] + dilation[i] * (config["kernel"][i] - 1) + 1
        assume(full - 2 * config["padding"][i] + output_padding[i] >= 1)
    return config


def run_both(config, dtype):
    """(cnnkit's output and gradients, torch's tensors) for one configuration."""
    rng = np.random.default_rng(config["seed"])
    x = rng.standard_normal((config["n"], config["cin"], *config["hw"])).astype(dtype)
    w = rng.standard_normal(
        (config["cin"], config["cout"] // config["groups"], *config["kernel"])
    ).astype(dtype)
    b = rng.standard_normal(config["cout"]).astype(dtype) if config["bias"] else None
    args = [config[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")]
    out, cache = F.conv_transpose2d(x, w, b, *args)
    dout = rng.standard_normal(out.shape).astype(dtype)
    ours = (out, *F.conv_transpose2d_backward(dout, cache))
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    yt = TF.conv_transpose2d(xt, wt, bt, *args)
    yt.backward(torch.tensor(dout))
    return ours, (yt, xt.grad, wt.grad, None if bt is None else bt.grad)


def compare(config, dtype):
    ours, theirs = run_both(config, dtype)
    for name, got, want in zip(["output", "dL/dx", "dL/dweight"], ours, theirs, strict=False):
        close(got, want, dtype, f"conv_transpose2d {name} {config}")
    if config["bias"]:
        close(ours[3], theirs[3], dtype, f"conv_transpose2d dL/dbias {config}")
    else:
        assert ours[3] is None


@settings(max_examples=60, deadline=None)
@given(configs())
def test_conv_transpose2d_matches_torch_float64(config):
    compare(config, np.float64)


@settings(max_examples=25, deadline=None)
@given(configs())
def test_conv_transpose2d_matches_torch_float32(config):
    compare(config, np.float32)


@pytest.mark.parametrize("compiled", [False, True] if _compiled.ENABLED else [False])
def test_numpy_and_compiled_col2im_agree_with_torch(compiled, monkeypatch):
    """The forward pass scatters through conv.py's col2im: both of its kernels, where present."""
    monkeypatch.setattr(_compiled, "ENABLED", compiled)
    config = dict(
        n=2, cin=4, cout=6, groups=2, kernel=(3, 2), stride=(2, 3), padding=(1, 0),
        output_padding=(1, 2), dilation=(2, 1), hw=(4, 3), bias=True, seed=7,
    )  # fmt: skip
    compare(config, np.float64)


EDGES = {
    # output_padding 2 >= padding + stride (allowed by dilation 3): rows past the scatter's end
    "output_padding_past_scatter": dict(stride=(1, 2), padding=(0, 0), output_padding=(2, 1),
                                        dilation=(3, 1), kernel=(2, 3)),
    "padding_crops_most": dict(stride=(2, 1), padding=(3, 2), output_padding=(1, 0),
                               dilation=(2, 1), kernel=(4, 3)),
    "pointwise_strided": dict(stride=(2, 3), padding=(0, 0), output_padding=(1, 2),
                              dilation=(1, 1), kernel=(1, 1)),
}  # fmt: skip


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("edge", sorted(EDGES))
def test_edge_configurations_match_torch(edge, groups):
    config = dict(n=2, cin=4, cout=4, groups=groups, hw=(3, 4), bias=True, seed=3, **EDGES[edge])
    compare(config, np.float64)


def module_pair(rng, **kwargs):
    theirs = torch.nn.ConvTranspose2d(4, 6, **kwargs).double()
    ours = nn.ConvTranspose2d(4, 6, dtype=np.float64, rng=rng, **kwargs)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


@pytest.mark.parametrize(
    ("batched", "output_size"),
    [
        (True, None),
        (False, None),
        (True, (9, 11)),
        (False, (10, 12)),
        (True, [2, 6, 10, 11]),  # torch takes (N, C, H, W) for batched input
        (False, torch.Size([6, 9, 12])),  # and (C, H, W) for unbatched input
    ],
)
def test_module_matches_torch_with_output_size(batched, output_size, rng):
    ours, theirs = module_pair(rng, kernel_size=3, stride=2, padding=1, groups=2)
    x = rng.standard_normal((2, 4, 5, 6) if batched else (4, 5, 6))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt, output_size)
    sizes = None if output_size is None else tuple(output_size)
    out = ours(x, sizes)
    dout = rng.standard_normal(out.shape)
    yt.backward(torch.tensor(dout))
    close(out, yt, np.float64, "ConvTranspose2d output")
    close(ours.backward(dout), xt.grad, np.float64, "ConvTranspose2d dL/dx")
    close(ours.weight.grad, theirs.weight.grad, np.float64, "ConvTranspose2d dL/dweight")
    close(ours.bias.grad, theirs.bias.grad, np.float64, "ConvTranspose2d dL/dbias")


def test_module_gradcheck(rng):
    conv = nn.ConvTranspose2d(
        4, 6, (3, 2), stride=2, padding=1, output_padding=(1, 0), groups=2, dilation=(1, 2),
        dtype=np.float64, rng=rng,
    )  # fmt: skip
    report = gradcheck(conv, rng.standard_normal((2, 4, 3, 4)), max_per_array=60)
    assert report.passed, str(report)


def test_functional_gradcheck_with_output_padding_past_the_scatter(rng):
    """output_padding 2 > padding 0 at stride 1 (allowed by dilation 3): zero bottom rows."""
    w = rng.standard_normal((2, 3, 2, 2))
    args = (1, 0, (2, 0), 1, (3, 1))

    def forward(x, weight, bias):
        return F.conv_transpose2d(x, weight, bias, *args)

    x, b = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal(3)
    report = gradcheck((forward, F.conv_transpose2d_backward), x, w, b, max_per_array=None)
    assert report.passed, str(report)
    bottom = forward(x, w, b)[0][:, :, -2:]  # rows 4 and 5 of 6: no input reaches them
    np.testing.assert_array_equal(bottom, np.broadcast_to(b[:, None, None], bottom.shape))


def test_module_init_shapes_repr_and_output_shape(rng):
    conv = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, rng=rng)
    torch_conv = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    assert conv.weight.shape == tuple(torch_conv.weight.shape) == (4, 3, 3, 3)
    assert conv.weight.dtype == np.float32
    bound = 1 / np.sqrt(3 * 9)  # torch's kaiming_uniform_(a=sqrt(5)) bound, fan_in = 3 * 3 * 3
    assert np.abs(conv.weight.data).max() <= bound
    assert np.abs(conv.bias.data).max() <= bound
    assert repr(conv) == (
        "ConvTranspose2d(4, 6, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
        "output_padding=(1, 1), groups=2)"
    )
    x = rng.standard_normal((2, 4, 5, 7)).astype(np.float32)
    assert conv.compute_output_shape(x.shape) == conv(x).shape == (2, 6, 10, 14)
    assert [k for k, _ in conv.named_parameters()] == [k for k, _ in torch_conv.named_parameters()]


X = np.zeros((1, 4, 3, 3))
W = np.zeros((4, 2, 3, 3))

# (id, call, exception, regular expression the one-line message must match)
CASES = [
    ("output_padding_not_below_stride_or_dilation",
     lambda: nn.ConvTranspose2d(4, 4, 3, output_padding=1), ValueError,
     r"ConvTranspose2d output_padding \(1, 1\) must be smaller than either stride "
     r"\(1, 1\) or dilation \(1, 1\) in each dimension"),
    ("output_padding_in_one_dimension",
     lambda: nn.ConvTranspose2d(4, 4, 3, stride=(3, 2), dilation=(1, 2), output_padding=(2, 2)),
     ValueError, r"output_padding \(2, 2\) must be smaller than either stride \(3, 2\) or "
     r"dilation \(1, 2\)"),
    ("functional_output_padding", lambda: F.conv_transpose2d(X, W, stride=2, output_padding=2),
     ValueError, r"conv_transpose2d output_padding \(2, 2\) must be smaller than either stride "
     r"\(2, 2\) or dilation \(1, 1\)"),
    ("output_padding_negative", lambda: nn.ConvTranspose2d(4, 4, 3, output_padding=-1),
     ValueError, r"output_padding must be >= 0, got -1"),
    ("groups_not_dividing", lambda: nn.ConvTranspose2d(4, 6, 3, groups=4), ValueError,
     r"ConvTranspose2d groups=4 must divide in_channels=4 and out_channels=6"),
    ("groups_zero", lambda: nn.ConvTranspose2d(4, 4, 3, groups=0), ValueError,
     r"ConvTranspose2d groups must be a positive int, got 0"),
    ("functional_groups_not_dividing", lambda: F.conv_transpose2d(X, W, groups=3), ValueError,
     r"conv_transpose2d groups=3 must divide the 4 input channels"),
    ("functional_groups_bool", lambda: F.conv_transpose2d(X, W, groups=True), ValueError,
     r"conv_transpose2d groups must be a positive int, got True"),
    ("in_channels_zero", lambda: nn.ConvTranspose2d(0, 4, 3), ValueError,
     r"ConvTranspose2d in_channels must be a positive int, got 0"),
    ("padding_string", lambda: nn.ConvTranspose2d(4, 4, 3, padding="same"), TypeError,
     r"padding must be an int or a pair of ints, got 'same'"),
    ("padding_negative", lambda: F.conv_transpose2d(X, W, padding=-1), ValueError,
     r"padding must be >= 0, got -1"),
    ("stride_zero", lambda: nn.ConvTranspose2d(4, 4, 3, stride=0), ValueError,
     r"stride must be >= 1, got 0"),
    ("padding_mode", lambda: nn.ConvTranspose2d(4, 4, 3, padding_mode="reflect"), ValueError,
     r"ConvTranspose2d padding_mode must be 'zeros' \(as in torch\), got 'reflect'"),
    ("wrong_channels", lambda: nn.ConvTranspose2d(2, 4, 3, dtype=np.float64)(X), ValueError,
     r"ConvTranspose2d expected input with 2 channels, got 4 \(input shape \(1, 4, 3, 3\)\)"),
    ("functional_wrong_channels", lambda: F.conv_transpose2d(X, np.zeros((3, 2, 3, 3))),
     ValueError, r"conv_transpose2d expected input with 3 channels \(weight \(3, 2, 3, 3\)\), "
     r"got 4 \(input shape \(1, 4, 3, 3\)\)"),
    ("weight_not_4d", lambda: F.conv_transpose2d(X, np.zeros((4, 2, 3))), ValueError,
     r"conv_transpose2d expected a 4-D weight \(C_in, C_out/groups, kH, kW\), got \(4, 2, 3\)"),
    ("bias_shape", lambda: F.conv_transpose2d(X, W, np.zeros(4)), ValueError,
     r"conv_transpose2d expected bias of shape \(2,\), got \(4,\)"),
    ("dtype_mix", lambda: F.conv_transpose2d(X, W.astype(np.float32)), TypeError,
     r"conv_transpose2d expected all arrays to share one dtype, got input float64, weight "
     r"float32"),
    ("input_2d", lambda: F.conv_transpose2d(np.zeros((3, 3)), W), ValueError,
     r"conv_transpose2d expected 4-D input \(N, C, H, W\), got shape \(3, 3\)"),
    ("output_not_positive", lambda: F.conv_transpose2d(X[:, :, :1, :1], W, padding=2),
     ValueError, r"conv_transpose2d output size \(-1, -1\) is not positive \(input shape "
     r"\(1, 4, 1, 1\)"),
    ("output_size_out_of_range",
     lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, dtype=np.float64)(X, (9, 7)), ValueError,
     r"ConvTranspose2d requested an output size of \(9, 7\), but valid sizes range from "
     r"\(7, 7\) to \(8, 8\) \(for an input of \(3, 3\)\)"),
    ("output_size_length", lambda: nn.ConvTranspose2d(4, 4, 3, dtype=np.float64)(X, (7,)),
     ValueError, r"ConvTranspose2d output_size must be 2 ints \(H, W\), or 3 or 4 ending with "
     r"them, got \(7,\)"),
    ("output_size_int", lambda: nn.ConvTranspose2d(4, 4, 3, dtype=np.float64)(X, 5),
     ValueError, r"ConvTranspose2d output_size must be 2 ints .*got 5"),
    ("backward_dout_shape",
     lambda: F.conv_transpose2d_backward(np.zeros((1, 3, 5, 5)), F.conv_transpose2d(X, W)[1]),
     ValueError, r"conv_transpose2d_backward expected dout of shape \(N=1, C_out=2, ...\), "
     r"got \(1, 3, 5, 5\)"),
]  # fmt: skip


test_error_messages = error_message_test(CASES)


def test_torch_refuses_output_padding_not_below_stride_or_dilation():
    with pytest.raises(RuntimeError, match="output padding must be smaller than either stride"):
        TF.conv_transpose2d(torch.zeros(1, 4, 3, 3), torch.zeros(4, 4, 3, 3), output_padding=1)
