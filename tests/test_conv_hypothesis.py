"""Random convolution and pooling configurations against PyTorch (float64, forward and all grads).

Hypothesis draws the batch, channels (groups dividing both), kH and kW independently, stride,
padding (ints, 'valid', 'same', explicit asymmetric), dilation, H != W, bias and the
CNNKIT_CONV_PATH the convolution runs under (applied where that path can take it) and the number
of threads its batch is split between (cnnkit.functional._parallel); configurations
whose dilated kernel does not fit the padded input are discarded with ``assume``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

import cnnkit.functional as F
from cnnkit.functional import _parallel
from cnnkit.functional.conv import PATH_CHOICES, PATH_VARIABLE

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")
TF = torch.nn.functional

RTOL, ATOL = 1e-10, 1e-12
# sized so that the whole file runs in well under 30 s on two cores
CONV_SETTINGS = settings(max_examples=150, deadline=None)
SETTINGS = settings(max_examples=80, deadline=None)


def close(ours, theirs, what):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.dtype == np.float64, what
    assert ours.shape == theirs.shape, f"{what}: {ours.shape} vs torch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL, err_msg=what)


def tf_same(size, kernel, stride, dilation):
    """TensorFlow's 'same' padding (before, after), written independently of cnnkit."""
    total = max((math.ceil(size / stride) - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    hw = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    kind = draw(st.sampled_from(["int", "pair", "explicit", "valid", "same"]))
    if kind == "int":
        padding = draw(st.integers(0, 3))
    elif kind == "pair":
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    elif kind == "explicit":
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    else:
        padding = kind
    return dict(
        n=draw(st.integers(1, 3)),
        cin=cin,
        cout=cout,
        groups=groups,
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        hw=hw,
        padding=padding,
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
        path=draw(st.sampled_from(PATH_CHOICES)),
        threads=draw(st.integers(1, 3)),
    )


def explicit_padding(config):
    padding, hw = config["padding"], config["hw"]
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return tuple(
            tf_same(hw[i], config["kernel"][i], config["stride"][i], config["dilation"][i])
            for i in range(2)
        )
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    if isinstance(padding[0], int):
        return (padding[0], padding[0]), (padding[1], padding[1])
    return padding


@CONV_SETTINGS
@given(conv_configs())
def test_random_conv2d_matches_torch(config):
    pad = explicit_padding(config)
    kernel, dilation = config["kernel"], config["dilation"]
    for i in range(2):
        assume(dilation[i] * (kernel[i] - 1) + 1 <= config["hw"][i] + sum(pad[i]))
    rng = np.random.default_rng(config["seed"])
    x = rng.standard_normal((config["n"], config["cin"], *config["hw"]))
    w = rng.standard_normal((config["cout"], config["cin"] // config["groups"], *kernel))
    b = rng.standard_normal(config["cout"]) if config["bias"] else None
    kwargs = dict(stride=config["stride"], dilation=dilation, groups=config["groups"])

    with pytest.MonkeyPatch.context() as patch, threadpool_limits(config["threads"], "blas"):
        patch.setenv(PATH_VARIABLE, config["path"])
        patch.setattr(_parallel, "MIN_PART_BYTES", 1)  # split every batch of 2 or more images
        out, cache = F.conv2d(x, w, b, padding=config["padding"], **kwargs)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = F.conv2d_backward(dout, cache)
    assert len(cache.parts) == min(config["threads"], config["n"])

    # torch pads explicitly (it has no asymmetric or strided 'same' padding)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    padded = TF.pad(xt, (pad[1][0], pad[1][1], pad[0][0], pad[0][1]))
    yt = TF.conv2d(padded, wt, bt, **kwargs)
    yt.backward(torch.tensor(dout))

    close(out, yt, f"conv2d output {config}")
    close(dx, xt.grad, f"conv2d dL/dx {config}")
    close(dw, wt.grad, f"conv2d dL/dweight {config}")
    if b is None:
        assert db is None
    else:
        close(db, bt.grad, f"conv2d dL/dbias {config}")
    if config["padding"] == "same":
        expected = tuple(math.ceil(config["hw"][i] / config["stride"][i]) for i in range(2))
        assert out.shape[2:] == expected


@SETTINGS
@given(
    n=st.integers(1, 2),
    channels=st.integers(1, 4),
    multiplier=st.integers(1, 2),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    hw=st.tuples(st.integers(2, 9), st.integers(2, 9)),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_depthwise_conv2d_matches_torch(
    n, channels, multiplier, kernel, stride, dilation, padding, hw, seed
):
    """groups == C_in (the depthwise path when C_out == C_in, a depth multiplier otherwise)."""
    for i in range(2):
        assume(dilation[i] * (kernel[i] - 1) + 1 <= hw[i] + 2 * padding[i])
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, channels, *hw))
    w = rng.standard_normal((channels * multiplier, 1, *kernel))
    b = rng.standard_normal(channels * multiplier)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=channels)
    out, cache = F.conv2d(x, w, b, **kwargs)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(dout, cache)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = TF.conv2d(xt, wt, bt, **kwargs)
    yt.backward(torch.tensor(dout))
    close(out, yt, "depthwise output")
    close(dx, xt.grad, "depthwise dL/dx")
    close(dw, wt.grad, "depthwise dL/dweight")
    close(db, bt.grad, "depthwise dL/dbias")


@st.composite
def pool_configs(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    hw = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    return dict(
        shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), *hw),
        kernel=kernel,
        stride=stride,
        padding=padding,
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@SETTINGS
@given(pool_configs(), st.booleans())
def test_random_max_pool2d_matches_torch(config, ties):
    shape, kernel, padding = config["shape"], config["kernel"], config["padding"]
    for i in range(2):
        assume(kernel[i] <= shape[2 + i] + 2 * padding[i])
    rng = np.random.default_rng(config["seed"])
    # integers from a tiny range make most windows hold several equal maxima
    x = rng.integers(-1, 2, shape).astype(np.float64) if ties else rng.standard_normal(shape)
    out, cache = F.max_pool2d(x, kernel, config["stride"], padding)
    dout = rng.standard_normal(out.shape)
    dx = F.max_pool2d_backward(dout, cache)
    xt = torch.tensor(x, requires_grad=True)
    yt = TF.max_pool2d(xt, kernel, config["stride"], padding)
    yt.backward(torch.tensor(dout))
    close(out, yt, f"max_pool2d output {config}")
    close(dx, xt.grad, f"max_pool2d dL/dx {config}")


@SETTINGS
@given(pool_configs(), st.booleans())
def test_random_avg_pool2d_matches_torch(config, count_include_pad):
    shape, kernel, padding = config["shape"], config["kernel"], config["padding"]
    for i in range(2):
        assume(kernel[i] <= shape[2 + i] + 2 * padding[i])
    rng = np.random.default_rng(config["seed"])
    x = rng.standard_normal(shape)
    out, cache = F.avg_pool2d(
        x, kernel, config["stride"], padding, count_include_pad=count_include_pad
    )
    dout = rng.standard_normal(out.shape)
    dx = F.avg_pool2d_backward(dout, cache)
    xt = torch.tensor(x, requires_grad=True)
    yt = TF.avg_pool2d(xt, kernel, config["stride"], padding, count_include_pad=count_include_pad)
    yt.backward(torch.tensor(dout))
    close(out, yt, f"avg_pool2d output {config}")
    close(dx, xt.grad, f"avg_pool2d dL/dx {config}")


@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
    output_size=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_adaptive_avg_pool2d_matches_torch(shape, output_size, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    out, cache = F.adaptive_avg_pool2d(x, output_size)
    dout = rng.standard_normal(out.shape)
    dx = F.adaptive_avg_pool2d_backward(dout, cache)
    xt = torch.tensor(x, requires_grad=True)
    yt = TF.adaptive_avg_pool2d(xt, output_size)
    yt.backward(torch.tensor(dout))
    close(out, yt, "adaptive_avg_pool2d output")
    close(dx, xt.grad, "adaptive_avg_pool2d dL/dx")
