"""Resampling layers against torch: interpolate / Upsample, PixelShuffle, PixelUnshuffle and
ChannelShuffle (forward and input gradient, float64 to 1e-10 and float32 to rtol 1e-4),
numerical gradient checks, the index rules' edge cases and every error message."""

from __future__ import annotations

import numpy as np
import pytest
from checks import PARITY_TOL as TOL
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit.functional as F
import cnnkit.nn as nn
from cnnkit.gradcheck import assert_gradcheck
from cnnkit.models.summary import trace

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")
TF = torch.nn.functional

SETTINGS = settings(max_examples=25, deadline=None)
LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def close(ours: np.ndarray, theirs, what: str) -> None:
    theirs = theirs.detach().numpy()
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, what
    np.testing.assert_allclose(ours, theirs, err_msg=what, **TOL[ours.dtype])


def torch_forward_backward(x: np.ndarray, dout_seed: int, op):
    """torch's output of ``op`` and its input gradient for a seeded upstream gradient."""
    t = torch.from_numpy(x).requires_grad_()
    out = op(t)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(x.dtype)
    out.backward(torch.from_numpy(dout))
    return out, t.grad, dout


def torch_backward_is_adjoint(shape, kwargs) -> bool:
    """False where torch's nearest backward reads other sources than its forward.

    For 3-D and 5-D input torch's forward takes floor(dst * scale) even when the output is as
    long as the input or twice as long, but its backward then takes dst and dst // 2.
    """
    if kwargs["mode"] != "nearest" or len(shape) == 4 or "scale_factor" not in kwargs:
        return True
    if kwargs.get("recompute_scale_factor"):
        return True
    factors = np.broadcast_to(kwargs["scale_factor"], (len(shape) - 2,))
    for n, factor in zip(shape[2:], factors, strict=True):
        m = int(np.floor(n * factor))
        if m in (n, 2 * n):
            dst = np.arange(m)
            plain = np.floor(dst.astype(np.float32) * np.float32(1.0 / factor))
            if not np.array_equal(np.minimum(plain, n - 1), dst * n // m):
                return False
    return True


@st.composite
def interpolate_configs(draw):
    dims = draw(st.integers(1, 3))
    spatial = tuple(
        draw(st.lists(st.integers(1, 7 if dims < 3 else 4), min_size=dims, max_size=dims))
    )
    mode = draw(st.sampled_from(["nearest", LINEAR[dims]]))
    kwargs = {"mode": mode}
    if mode != "nearest":
        kwargs["align_corners"] = draw(st.sampled_from([None, False, True]))
    if draw(st.booleans()):
        sizes = draw(st.lists(st.integers(1, 12), min_size=dims, max_size=dims))
        kwargs["size"] = sizes[0] if draw(st.booleans()) else tuple(sizes)
    else:
        factor = st.one_of(st.sampled_from([1.0, 2.0, 3.0, 0.5, 1.5]), st.floats(0.3, 3.5))
        factors = tuple(
            max(f, 1.0 / n)
            for f, n in zip(
                draw(st.lists(factor, min_size=dims, max_size=dims)), spatial, strict=True
            )
        )
        kwargs["scale_factor"] = factors
        kwargs["recompute_scale_factor"] = draw(st.sampled_from([None, False, True]))
    return (2, 3, *spatial), kwargs


@SETTINGS
@given(interpolate_configs(), st.sampled_from([np.float64, np.float32]), st.integers(0, 2**16))
def test_interpolate_equals_torch(config, dtype, seed):
    shape, kwargs = config
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    out, cache = F.interpolate(x, **kwargs)
    theirs, their_dx, dout = torch_forward_backward(
        x, seed + 1, lambda t: TF.interpolate(t, **kwargs)
    )
    close(out, theirs, f"output {kwargs}")
    dx = F.interpolate_backward(dout, cache)
    if torch_backward_is_adjoint(shape, kwargs):
        close(dx, their_dx, f"input gradient {kwargs}")
    assert dx.dtype == x.dtype and dx.shape == x.shape


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((2, 3, 5, 4), {"scale_factor": 2, "mode": "bilinear", "align_corners": False}),
        ((2, 3, 5, 4), {"scale_factor": 1.7, "mode": "bilinear", "align_corners": True}),
        ((1, 2, 7, 6), {"size": (3, 4), "mode": "bilinear"}),
        ((2, 2, 6), {"scale_factor": 2.5, "mode": "linear", "align_corners": False}),
        ((1, 2, 3, 4, 2), {"size": (5, 3, 4), "mode": "trilinear", "align_corners": True}),
        ((2, 3, 4, 5), {"scale_factor": (1.5, 0.6), "mode": "nearest"}),
        ((1, 2, 3, 2, 4), {"scale_factor": 2, "mode": "nearest"}),
    ],
)
def test_upsample_gradcheck(shape, kwargs, rng):
    layer = nn.Upsample(**kwargs)
    assert_gradcheck(layer, rng.standard_normal(shape), max_per_array=60)
    assert_gradcheck(
        (lambda x: F.interpolate(x, **kwargs), F.interpolate_backward),
        rng.standard_normal(shape),
        max_per_array=60,
    )


def test_bilinear_clamps_the_source_at_zero_and_copies_equal_sizes(rng):
    x = rng.standard_normal((1, 1, 1, 4))
    out, _ = F.interpolate(x, size=(1, 8), mode="bilinear", align_corners=False)
    assert out[0, 0, 0, 0] == x[0, 0, 0, 0]  # src = max(0.5 * 0.5 - 0.5, 0) = 0
    np.testing.assert_allclose(out[0, 0, 0, 1], 0.75 * x[0, 0, 0, 0] + 0.25 * x[0, 0, 0, 1])
    same, _ = F.interpolate(x, scale_factor=(1.0, 1.1), mode="bilinear")  # 4 * 1.1 -> 4
    np.testing.assert_array_equal(same, x)
    corners, _ = F.interpolate(x, size=(1, 7), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(corners[..., ::2], x, rtol=1e-15)


def test_nearest_uses_the_scale_factor_not_the_size_ratio():
    """2 * 3.05 -> 6 outputs read floor(dst / 3.05), not floor(dst * 2 / 6)."""
    x = np.arange(2.0).reshape(1, 1, 2)
    out, _ = F.interpolate(x, scale_factor=3.05)
    recomputed, _ = F.interpolate(x, scale_factor=3.05, recompute_scale_factor=True)
    theirs = TF.interpolate(torch.from_numpy(x), scale_factor=3.05).numpy()
    np.testing.assert_array_equal(out, theirs)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(recomputed[0, 0], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(
        recomputed,
        TF.interpolate(torch.from_numpy(x), scale_factor=3.05, recompute_scale_factor=True).numpy(),
    )


def test_nearest_gradient_is_the_adjoint_where_torch_s_is_not(rng):
    """1-D input of 5 at scale 1.1: torch reads floor(dst / 1.1) forward, dst backward."""
    x = rng.standard_normal((1, 1, 5))
    kwargs = {"scale_factor": 1.1, "mode": "nearest"}
    assert not torch_backward_is_adjoint(x.shape, kwargs)
    out, cache = F.interpolate(x, **kwargs)
    theirs, their_dx, dout = torch_forward_backward(x, 0, lambda t: TF.interpolate(t, **kwargs))
    close(out, theirs, "output")
    matrix = np.stack([F.interpolate(e[None, None], **kwargs)[0][0, 0] for e in np.eye(5)], 1)
    adjoint = matrix.T @ dout[0, 0]
    np.testing.assert_allclose(F.interpolate_backward(dout, cache)[0, 0], adjoint, rtol=1e-15)
    assert not np.allclose(their_dx.numpy()[0, 0], adjoint)


def test_upsample_module_matches_torch_module(rng):
    for kwargs in (
        {"scale_factor": 2},
        {"size": (3, 4), "mode": "bilinear"},
        {"scale_factor": (1.5, 2), "mode": "bilinear", "align_corners": True},
    ):
        ours, theirs = nn.Upsample(**kwargs), torch.nn.Upsample(**kwargs)
        assert repr(ours) == repr(theirs)
        x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
        out = ours(x)
        expected, their_dx, dout = torch_forward_backward(x, 1, theirs)
        close(out, expected, repr(ours))
        close(ours.backward(dout), their_dx, repr(ours))
        assert ours.compute_output_shape(x.shape) == out.shape
    for ours, theirs in (
        (nn.UpsamplingNearest2d(scale_factor=3), torch.nn.UpsamplingNearest2d(scale_factor=3)),
        (nn.UpsamplingBilinear2d(size=(5, 7)), torch.nn.UpsamplingBilinear2d(size=(5, 7))),
    ):
        assert repr(ours) == repr(theirs)
        x = rng.standard_normal((1, 2, 3, 4))
        close(ours(x), theirs(torch.from_numpy(x)), repr(ours))


def test_upsample_backward_pops_one_cache_per_call(rng):
    layer = nn.Upsample(scale_factor=2, mode="bilinear")
    small, large = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 2, 5, 4))
    out_small, out_large = layer(small), layer(large)
    assert layer.backward(np.ones_like(out_large)).shape == large.shape
    assert layer.backward(np.ones_like(out_small)).shape == small.shape


@st.composite
def shuffle_configs(draw):
    batch = tuple(draw(st.lists(st.integers(1, 2), max_size=2)))
    factor = draw(st.integers(1, 3))
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return batch, factor, c, h, w


@SETTINGS
@given(shuffle_configs(), st.sampled_from([np.float64, np.float32]), st.integers(0, 2**16))
def test_pixel_shuffle_and_unshuffle_equal_torch(config, dtype, seed):
    batch, r, c, h, w = config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, c * r * r, h, w)).astype(dtype)
    shuffle = nn.PixelShuffle(r)
    out = shuffle(x)
    theirs, their_dx, dout = torch_forward_backward(x, seed, torch.nn.PixelShuffle(r))
    np.testing.assert_array_equal(out, theirs.detach().numpy())
    np.testing.assert_array_equal(shuffle.backward(dout), their_dx.numpy())
    assert shuffle.compute_output_shape(x.shape) == out.shape

    unshuffle = nn.PixelUnshuffle(r)
    y = rng.standard_normal((*batch, c, h * r, w * r)).astype(dtype)
    out = unshuffle(y)
    theirs, their_dy, dout = torch_forward_backward(y, seed, torch.nn.PixelUnshuffle(r))
    np.testing.assert_array_equal(out, theirs.detach().numpy())
    np.testing.assert_array_equal(unshuffle.backward(dout), their_dy.numpy())
    assert unshuffle.compute_output_shape(y.shape) == out.shape
    np.testing.assert_array_equal(unshuffle(shuffle(x)), x)


@SETTINGS
@given(
    st.integers(1, 4),
    st.integers(1, 3),
    st.lists(st.integers(1, 3), min_size=1, max_size=3),
    st.integers(0, 2**16),
)
def test_channel_shuffle_equals_torch(groups, per_group, spatial, seed):
    x = np.random.default_rng(seed).standard_normal((2, groups * per_group, *spatial))
    layer = nn.ChannelShuffle(groups)
    out = layer(x)
    theirs, their_dx, dout = torch_forward_backward(x, seed, torch.nn.ChannelShuffle(groups))
    np.testing.assert_array_equal(out, theirs.detach().numpy())
    np.testing.assert_array_equal(layer.backward(dout), their_dx.numpy())
    assert repr(layer) == repr(torch.nn.ChannelShuffle(groups))


def test_shuffle_reprs_and_gradchecks(rng):
    for ours, theirs, shape in (
        (nn.PixelShuffle(2), torch.nn.PixelShuffle(2), (2, 8, 2, 3)),
        (nn.PixelUnshuffle(2), torch.nn.PixelUnshuffle(2), (2, 2, 4, 6)),
        (nn.ChannelShuffle(3), torch.nn.ChannelShuffle(3), (2, 6, 2, 2)),
    ):
        assert repr(ours) == repr(theirs)
        assert_gradcheck(ours, rng.standard_normal(shape), max_per_array=30)


def test_summary_infers_resampling_shapes():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.PixelShuffle(2),
        nn.Upsample(scale_factor=1.5, mode="bilinear"),
        nn.PixelUnshuffle(3),
        nn.ChannelShuffle(2),
    )
    inferred, computed = trace(model, (3, 4, 4), infer=True), trace(model, (3, 4, 4), infer=False)
    assert [r.output_shape for r in inferred.rows] == [r.output_shape for r in computed.rows]
    assert inferred.output_shape == (1, 18, 4, 4)


X4 = np.zeros((1, 1, 4, 4))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: F.interpolate(X4, scale_factor=2, mode="bicubic"),
            ValueError,
            "mode must be one of nearest, linear, bilinear, trilinear, got 'bicubic'",
        ),
        (
            lambda: F.interpolate(X4, scale_factor=2, align_corners=True),
            ValueError,
            "align_corners only applies to modes linear, bilinear and trilinear, got "
            "align_corners=True with mode='nearest'",
        ),
        (
            lambda: F.interpolate(X4, scale_factor=2, mode="bilinear", align_corners=1),
            TypeError,
            "align_corners must be a bool or None, got 1",
        ),
        (
            lambda: F.interpolate(X4, size=3, scale_factor=2),
            ValueError,
            r"takes exactly one of size and scale_factor, got size=3 and scale_factor=2",
        ),
        (
            lambda: F.interpolate(X4),
            ValueError,
            r"takes exactly one of size and scale_factor, got size=None and scale_factor=None",
        ),
        (
            lambda: F.interpolate(X4, size=3, recompute_scale_factor=True),
            ValueError,
            r"recompute_scale_factor=True needs scale_factor, not size \(got size=3\)",
        ),
        (
            lambda: F.interpolate(X4, size=(3, 4, 5)),
            ValueError,
            r"size must be a positive int or a sequence of them, one per spatial axis \(2\), "
            r"got \(3, 4, 5\)",
        ),
        (lambda: F.interpolate(X4, size=0), ValueError, "size must be a positive int .* got 0"),
        (lambda: F.interpolate(X4, size=2.5), ValueError, "size must be a positive int .* got 2.5"),
        (
            lambda: F.interpolate(X4, scale_factor=-1.0),
            ValueError,
            "scale_factor must be a positive number .* got -1.0",
        ),
        (
            lambda: F.interpolate(X4, scale_factor=(2,)),
            ValueError,
            r"scale_factor must be a positive number .* \(2\), got \(2,\)",
        ),
        (
            lambda: F.interpolate(X4, scale_factor=0.1),
            ValueError,
            r"scale_factor=0.1 gives an empty output \(0, 0\) for input shape \(1, 1, 4, 4\)",
        ),
        (
            lambda: F.interpolate([[1.0]], scale_factor=2),
            TypeError,
            "interpolate expected a numpy.ndarray, got list",
        ),
        (
            lambda: F.interpolate(X4.astype(int), scale_factor=2),
            TypeError,
            "interpolate expected input of dtype float32 or float64, got int64",
        ),
        (
            lambda: F.interpolate(X4[0, 0], scale_factor=2),
            ValueError,
            r"expected 3-D, 4-D or 5-D input \(N, C, \*spatial\), got shape \(4, 4\)",
        ),
        (
            lambda: F.interpolate(X4[0], scale_factor=2, mode="bilinear"),
            ValueError,
            r"mode='bilinear' expects 4-D input, got shape \(1, 4, 4\)",
        ),
        (
            lambda: nn.Upsample(scale_factor=2, mode="area"),
            ValueError,
            "Upsample mode must be one of",
        ),
        (
            lambda: nn.Upsample(size=2, scale_factor=2),
            ValueError,
            "Upsample takes exactly one of size and scale_factor",
        ),
        (
            lambda: nn.Upsample(scale_factor=(2, 0)),
            ValueError,
            r"Upsample scale_factor must be a positive number or a sequence of them, one per "
            r"spatial axis, got \(2, 0\)",
        ),
        (
            lambda: nn.UpsamplingNearest2d(),
            ValueError,
            "UpsamplingNearest2d takes exactly one of size and scale_factor",
        ),
        (lambda: nn.PixelShuffle(0), ValueError, "PixelShuffle upscale_factor must be >= 1, got 0"),
        (
            lambda: nn.PixelShuffle(2.0),
            TypeError,
            "PixelShuffle upscale_factor must be an int, got 2.0",
        ),
        (
            lambda: nn.PixelUnshuffle(True),
            TypeError,
            "PixelUnshuffle downscale_factor must be an int, got True",
        ),
        (lambda: nn.ChannelShuffle(-1), ValueError, "ChannelShuffle groups must be >= 1, got -1"),
        (
            lambda: nn.PixelShuffle(2)(np.zeros((1, 3, 2, 2))),
            ValueError,
            r"pixel_shuffle expected channels divisible by upscale_factor\*\*2 = 4, got 3 "
            r"\(input shape \(1, 3, 2, 2\)\)",
        ),
        (
            lambda: nn.PixelShuffle(2)(np.zeros((4, 2))),
            ValueError,
            r"pixel_shuffle expected input of at least 3 dimensions \(\*, C, H, W\), got shape "
            r"\(4, 2\)",
        ),
        (
            lambda: nn.PixelShuffle(2)([1.0]),
            TypeError,
            "pixel_shuffle expected a numpy.ndarray, got list",
        ),
        (
            lambda: nn.PixelUnshuffle(2)(np.zeros((1, 1, 4, 3))),
            ValueError,
            r"pixel_unshuffle expected height and width divisible by downscale_factor 2, got 4 "
            r"x 3 \(input shape \(1, 1, 4, 3\)\)",
        ),
        (
            lambda: nn.ChannelShuffle(2)(np.zeros((1, 3, 2))),
            ValueError,
            r"channel_shuffle expected channels divisible by groups 2, got 3 \(input shape \(1, "
            r"3, 2\)\)",
        ),
        (
            lambda: nn.ChannelShuffle(2)(np.zeros((2, 4))),
            ValueError,
            r"channel_shuffle expected input of at least 3 dimensions \(N, C, \*\), got shape "
            r"\(2, 4\)",
        ),
    ],
)
def test_error_messages(call, error, match):
    with pytest.raises(error, match=match):
        call()
