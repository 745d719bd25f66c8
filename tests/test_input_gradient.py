"""Skipping the input gradient of a first layer: same parameter gradients, no dL/dx."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import nn
from cnnkit.functional.conv import conv2d, conv2d_backward
from cnnkit.train import Trainer, first_layer, skip_input_gradient

# (x shape, weight shape, options, the kernel path the forward pass takes)
PATHS = [
    ((2, 4, 7, 6), (4, 4, 3, 3), dict(padding=1), "grid"),
    ((2, 3, 8, 8), (8, 3, 3, 3), dict(padding=1, stride=2), "padded"),
    ((2, 4, 5, 6), (3, 4, 1, 1), dict(stride=2, padding=1), "pointwise"),
    ((2, 4, 6, 6), (4, 1, 3, 3), dict(padding=1, groups=4), "depthwise"),
    ((2, 4, 6, 6), (4, 1, 3, 3), dict(padding=1, groups=4, stride=2), "depthwise"),
]


@pytest.mark.parametrize("x_shape, w_shape, options, path", PATHS)
def test_conv2d_backward_without_input_gradient_keeps_the_parameter_gradients(
    x_shape, w_shape, options, path, rng
):
    x = rng.standard_normal(x_shape)
    weight, bias = rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    out, cache = conv2d(x, weight, bias, **options)
    assert cache.path == path
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = conv2d_backward(dout, cache)
    skipped, dweight_alone, dbias_alone = conv2d_backward(dout, cache, input_gradient=False)
    assert dx is not None and skipped is None
    np.testing.assert_allclose(dweight_alone, dweight, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dbias_alone, dbias, rtol=1e-12, atol=1e-12)


def model_and_batch(rng):
    model = ck.models.get("small_cnn", num_classes=10, in_channels=1, dtype=np.float64)
    return model, rng.standard_normal((4, 1, 8, 8))


def test_skip_input_gradient_returns_none_and_the_same_parameter_gradients(rng):
    model, x = model_and_batch(rng)
    model.eval()  # the same dropout (none) in both forward passes
    dout = rng.standard_normal(model(x).shape)
    model.zero_grad()
    assert model.backward(dout).shape == x.shape
    expected = [p.grad.copy() for p in model.parameters()]
    model(x)
    model.zero_grad()
    with skip_input_gradient(model):
        assert model.backward(dout) is None
    for got, want in zip((p.grad for p in model.parameters()), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert first_layer(model).input_gradient  # restored on exit


def test_skip_input_gradient_restores_the_layer_after_an_error(rng):
    model, x = model_and_batch(rng)
    with pytest.raises(ValueError), skip_input_gradient(model):
        assert not first_layer(model).input_gradient
        raise ValueError
    assert first_layer(model).input_gradient
    assert model.backward(np.ones_like(model(x))).shape == x.shape


def test_models_without_a_first_convolution_are_left_as_they_are(rng):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3, dtype=np.float64))
    x = rng.standard_normal((2, 3, 2, 2))
    out = model(x)
    assert isinstance(first_layer(model), nn.Flatten)
    with skip_input_gradient(model):
        assert model.backward(np.ones_like(out)).shape == x.shape


def test_a_container_with_its_own_backward_stops_the_search(rng):
    class ScaledBackward(nn.Sequential):
        def backward(self, dout):
            return 2 * super().backward(dout)

    model = ScaledBackward(nn.Conv2d(1, 2, 3, dtype=np.float64))
    x = rng.standard_normal((1, 1, 5, 5))
    out = model(x)
    assert first_layer(model) is model
    with skip_input_gradient(model):
        assert model.backward(np.ones_like(out)).shape == x.shape


def test_first_layer_follows_first_children_of_sequential_models():
    for name in ("small_cnn", "lenet5", "resnet20", "mini_xception"):
        model = ck.models.get(name, num_classes=10, in_channels=1)
        assert isinstance(first_layer(model), nn.Conv2d), name
    assert isinstance(first_layer(nn.Sequential()), nn.Sequential)


def test_trainer_step_skips_the_input_gradient_and_updates_as_a_plain_step():
    labels = np.array([0, 1, 2, 3])
    model, x = model_and_batch(np.random.default_rng(0))
    layer, returned = first_layer(model), []
    original_backward = layer.backward
    layer.backward = lambda dout: returned.append(original_backward(dout)) or returned[-1]
    Trainer(model, ck.optim.SGD(model.parameters(), lr=0.1), progress=False).train_step(x, labels)
    assert returned == [None] and layer.input_gradient

    reference, x = model_and_batch(np.random.default_rng(0))
    loss_fn, optimizer = nn.CrossEntropyLoss(), ck.optim.SGD(reference.parameters(), lr=0.1)
    loss_fn(reference(x), labels)
    reference.zero_grad()
    assert reference.backward(loss_fn.backward()).shape == x.shape
    optimizer.step()
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12, atol=1e-12)
