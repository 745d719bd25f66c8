"""cnnkit.no_grad(): forward passes that keep nothing for backward, as torch.no_grad()."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import nn
from cnnkit.models.summary import summary
from cnnkit.train import evaluate


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 1, stride=2),
        nn.GlobalAvgPool2d(),
        nn.Linear(16, 5),
    )


def peak_mib(function) -> float:
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("training", [False, True])
def test_outputs_are_the_same_with_and_without_no_grad(training, rng):
    model = small_cnn().train(training)
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    with ck.no_grad():
        inferred = model(x)
    np.testing.assert_array_equal(inferred, model(x))


def test_no_layer_keeps_a_cache_and_backward_says_why(rng):
    model = small_cnn().eval()
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    with ck.no_grad():
        out = model(x)
    leaves = [m for m in model.modules() if isinstance(m, nn.module.CachedModule)]
    assert leaves and all(m._cache is nn.module._DROPPED for m in leaves)
    with pytest.raises(
        RuntimeError,
        match=r"^Linear\.backward called after a forward pass under cnnkit\.no_grad\(\), "
        r"which keeps nothing for backward$",
    ):
        model.backward(np.ones_like(out))
    model(x)  # a forward pass outside no_grad keeps its caches again
    assert model.backward(np.ones_like(out)).shape == x.shape


def test_backward_before_any_forward_keeps_its_own_message():
    with pytest.raises(RuntimeError, match=r"^Conv2d\.backward called before forward$"):
        nn.Conv2d(1, 1, 3).backward(np.ones((1, 1, 1, 1), np.float32))


def test_inference_peak_memory_drops(rng):
    model = nn.Sequential(*[nn.Conv2d(16, 16, 3, padding=1) for _ in range(8)]).eval()
    x = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
    model(x)  # warm up the kernels' scratch buffers, which both runs then reuse

    def without():
        model(x)

    def under_no_grad():
        with ck.no_grad():
            model(x)

    kept, dropped = peak_mib(without), peak_mib(under_no_grad)
    # 8 layers each keep a padded copy of a 0.5 MiB input without no_grad; one or two at a time
    assert dropped < 0.5 * kept, (dropped, kept)


def test_batch_norm_still_updates_running_statistics_in_training_mode(rng):
    layer = nn.BatchNorm2d(3)
    x = (rng.standard_normal((4, 3, 5, 5)) + 2).astype(np.float32)
    with ck.no_grad():
        layer(x)
    np.testing.assert_allclose(layer.running_mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)


def test_flag_nests_restores_after_errors_and_is_per_thread():
    assert ck.is_grad_enabled()
    seen_by_other_thread = []
    with ck.no_grad():
        assert not ck.is_grad_enabled()
        with ck.no_grad():
            assert not ck.is_grad_enabled()
        assert not ck.is_grad_enabled()
        worker = threading.Thread(target=lambda: seen_by_other_thread.append(ck.is_grad_enabled()))
        worker.start()
        worker.join()
    assert ck.is_grad_enabled() and seen_by_other_thread == [True]
    with pytest.raises(ValueError), ck.no_grad():
        raise ValueError
    assert ck.is_grad_enabled()


def test_no_grad_decorates_a_function(rng):
    model = small_cnn().eval()

    @ck.no_grad()
    def predict(x):
        assert not ck.is_grad_enabled()
        return model(x)

    predict(rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    assert ck.is_grad_enabled()
    assert all(m._cache is nn.module._DROPPED for m in model.modules() if hasattr(m, "_take_cache"))


def test_evaluate_leaves_no_cache_behind(rng):
    model = small_cnn()
    images = rng.standard_normal((6, 3, 16, 16)).astype(np.float32)
    labels = rng.integers(0, 5, 6)
    evaluate(model, [(images, labels)])
    assert model.training
    assert not any(
        m._cache is not None and m._cache is not nn.module._DROPPED
        for m in model.modules()
        if isinstance(m, nn.module.CachedModule)
    )


def test_summary_under_no_grad_keeps_the_pending_caches(rng):
    model = small_cnn()
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    logits = model(x)
    with ck.no_grad():
        summary(model, (3, 16, 16))
    model.backward(np.ones_like(logits))  # the caches of the forward pass above are intact
