"""A batch split between threads computes what one thread computes (cnnkit.functional._parallel).

The convolution's split is checked against PyTorch in test_conv_hypothesis.py (every path, 1 to
3 threads); here: the slicing, the runner's errors and grad mode, and batch norm, ReLU and
max pooling split against the same kernels on one thread.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

import cnnkit
import cnnkit.functional as F
from cnnkit.functional import _compiled, _parallel
from cnnkit.nn.grad_mode import is_grad_enabled


@pytest.fixture
def split_everything(monkeypatch):
    """Split every batch of two or more images, however small."""
    monkeypatch.setattr(_parallel, "MIN_PART_BYTES", 1)
    monkeypatch.setattr(_parallel, "MIN_LOOP_PART_BYTES", 1)


@settings(max_examples=200, deadline=None)
@given(count=st.integers(0, 50), parts=st.integers(1, 8))
def test_split_covers_the_batch_in_near_equal_contiguous_parts(count, parts):
    slices = _parallel.split(count, parts)
    assert len(slices) == max(1, min(parts, count))
    assert slices[0].start == 0 and slices[-1].stop == count
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) - min(sizes) <= 1


def test_parts_follow_the_blas_threads_and_the_size_floor(monkeypatch):
    monkeypatch.setattr(_parallel, "MIN_PART_BYTES", 100)
    with threadpool_limits(2, "blas"):
        assert len(_parallel.parts_for(8, 1000)) == 2
        assert len(_parallel.parts_for(8, 150)) == 1  # two parts would be under 100 bytes each
        assert len(_parallel.parts_for(1, 1000)) == 1
        assert len(_parallel.parts_for(8, 1000, min_part_bytes=600)) == 1  # a loop's floor
    with threadpool_limits(1, "blas"):
        assert len(_parallel.parts_for(8, 1000)) == 1


def test_run_waits_for_every_task_and_raises_the_first_error():
    finished = []
    started = threading.Event()

    def slow_worker_task():
        started.wait(5)
        finished.append("worker")
        return 2

    def failing_first_task():
        started.set()
        raise ValueError("first part failed")

    with threadpool_limits(2, "blas"), pytest.raises(ValueError, match="first part failed"):
        _parallel.run([failing_first_task, slow_worker_task])
    assert finished == ["worker"]  # it finished before run raised

    def failing_worker_task():
        raise KeyError("worker part failed")

    with pytest.raises(KeyError, match="worker part failed"):
        _parallel.run([lambda: 1, failing_worker_task])


def test_run_returns_results_in_task_order_and_limits_blas_meanwhile():
    with threadpool_limits(2, "blas"):
        results = _parallel.run([lambda: ("a", _parallel.blas_threads()), lambda: "b"])
        assert results == [("a", 1), "b"]
        assert _parallel.blas_threads() == 2  # restored afterwards


def test_workers_run_in_the_callers_grad_mode():
    with cnnkit.no_grad():
        modes = _parallel.run([is_grad_enabled, is_grad_enabled])
    assert modes == [False, False]
    assert _parallel.run([is_grad_enabled, is_grad_enabled]) == [True, True]


def test_by_images_without_a_batched_argument_runs_once():
    calls = []
    _parallel.by_images(lambda a, b: calls.append((a.shape, b)), np.zeros(4), 3)
    assert calls == [((4,), 3)]


def on_threads(threads, call):
    with threadpool_limits(threads, "blas"):
        return call()


needs_numba = pytest.mark.skipif(not _compiled.ENABLED, reason="the split kernels are numba's")


@needs_numba
@pytest.mark.usefixtures("split_everything")
@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_split_matches_one_thread(rng, relu):
    x = rng.standard_normal((5, 3, 4, 6))
    gamma, beta, dout = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(x.shape)

    def step():
        stats = np.zeros(3), np.ones(3)
        out, cache = F.batch_norm(x, *stats, gamma, beta, training=True, relu=relu)
        return (out, *stats, *F.batch_norm_backward(dout, cache))

    for split, single in zip(on_threads(3, step), on_threads(1, step), strict=True):
        np.testing.assert_allclose(split, single, rtol=1e-13, atol=1e-14)


@needs_numba
@pytest.mark.usefixtures("split_everything")
def test_relu_and_max_pool_split_are_bit_for_bit_one_thread(rng):
    x = rng.standard_normal((4, 3, 5, 7)).astype(np.float32)  # 105 bits an image: 14 bytes
    x[0, 0, 0, :3] = [np.nan, 0.0, -0.0]

    def step(kernel_size, stride):
        out, mask = F.relu(x)
        dx = F.relu_backward(np.ones_like(out), mask)
        pooled, cache = F.max_pool2d(x, kernel_size, stride)
        return out, mask.bits, dx, pooled, F.max_pool2d_backward(np.ones_like(pooled), cache)

    for geometry in [(2, 2), (3, 2), (3, 1)]:
        split, single = (
            on_threads(2, lambda: step(*geometry)),
            on_threads(1, lambda: step(*geometry)),
        )
        for ours, theirs in zip(split, single, strict=True):
            np.testing.assert_array_equal(ours, theirs)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_gets_its_own_worker_threads():
    with threadpool_limits(2, "blas"):
        assert _parallel.run([lambda: 1, lambda: 2]) == [1, 2]  # the parent's pool exists
        time.sleep(0.1)  # its worker goes idle: a child would then wait for it forever
        pid = os.fork()
        if pid == 0:  # the child: its parent's worker thread is not here
            signal.alarm(10)  # a child waiting on a missing thread dies instead of hanging
            code = 0 if _parallel.run([lambda: 1, lambda: 2]) == [1, 2] else 1
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_batch_too_small_to_split_runs_on_one_blas_thread_and_one_image_on_all():
    with threadpool_limits(2, "blas"):
        assert _parallel.run([_parallel.blas_threads], batch=4) == [1]
        assert _parallel.run([_parallel.blas_threads], batch=1) == [2]
        assert _parallel.blas_threads() == 2


@pytest.mark.parametrize(("shape", "parts"), [((16, 1280, 1000), 2), ((4, 8, 3), 1)])
def test_matmul_splits_the_columns_between_threads(rng, shape, parts):
    """A classifier's weight (1280 x 1000, 5 MB) is split by columns, a small product is not."""
    m, k, n = shape
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32).T
    with threadpool_limits(2, "blas"), patch.object(_parallel, "run", wraps=_parallel.run) as spy:
        product = _parallel.matmul(a, b, batch=m)
    assert len(spy.call_args.args[0]) == parts and spy.call_args.kwargs == {"batch": m}
    np.testing.assert_allclose(product, a @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("batch", "threads"), [(4, 1), (1, 2)])
def test_adaptive_average_pooling_runs_a_batch_on_one_blas_thread(monkeypatch, batch, threads):
    """Its matrix products leave no BLAS worker spinning into the next layer's split."""
    from cnnkit.functional import adaptive_pool

    seen, products = [], adaptive_pool._two_products

    def recording(*args):
        seen.append(_parallel.blas_threads())
        return products(*args)

    monkeypatch.setattr(adaptive_pool, "_two_products", recording)
    x = np.ones((batch, 3, 6, 6), dtype=np.float32)
    with threadpool_limits(2, "blas"):
        out, _ = F.adaptive_avg_pool2d(x, 2)
    assert seen == [threads]
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)


def test_a_convolution_with_a_small_input_and_a_large_output_splits_its_batch(rng):
    """The part floor counts the larger of a layer's input and output: MobileNetV2's 160 -> 960
    channels at 7 x 7 is 0.5 MB in and 3 MB out, worth two threads."""
    x = rng.standard_normal((16, 160, 7, 7)).astype(np.float32)
    weight = rng.standard_normal((960, 160, 1, 1)).astype(np.float32)
    assert x.nbytes < 2 * _parallel.MIN_PART_BYTES
    with threadpool_limits(2, "blas"):
        out, cache = F.conv2d(x, weight)
        narrow, narrow_cache = F.conv2d(x, weight[:8])
    with threadpool_limits(1, "blas"):
        alone, alone_cache = F.conv2d(x, weight)
    assert len(cache.parts) == 2 and len(narrow_cache.parts) == len(alone_cache.parts) == 1
    np.testing.assert_allclose(out, alone, rtol=1e-6, atol=1e-6)


def test_a_convolution_with_many_multiply_adds_per_value_splits_its_batch(rng):
    """LeNet-5's second layer at batch 64: 0.3 MB in, 0.4 MB out, 15 M multiply-adds."""
    x = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    weight = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    assert x.nbytes < 2 * _parallel.MIN_PART_BYTES
    with threadpool_limits(2, "blas"):
        out, cache = F.conv2d(x, weight)
        few, few_cache = F.conv2d(x[:8], weight)
    with threadpool_limits(1, "blas"):
        alone, _ = F.conv2d(x, weight)
    assert len(cache.parts) == 2 and len(few_cache.parts) == 1
    np.testing.assert_allclose(out, alone, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(few, alone[:8], rtol=1e-5, atol=1e-5)


@needs_numba
@pytest.mark.usefixtures("split_everything")
@pytest.mark.parametrize("with_bias", [False, True])
def test_one_images_depthwise_channels_split_between_threads_bit_for_bit(rng, with_bias):
    x = rng.standard_normal((1, 5, 9, 8)).astype(np.float32)
    weight = rng.standard_normal((5, 1, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32) if with_bias else None

    def forward():
        with cnnkit.no_grad():
            return F.conv2d(x, weight, bias, stride=2, padding=1, groups=5)[0]

    calls = []
    kernel = _compiled.depthwise_forward
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            _compiled, "depthwise_forward", lambda *a: calls.append(a[0].shape) or kernel(*a)
        )
        split = on_threads(2, forward)
    assert sorted(calls) == [(1, 2, 9, 8), (1, 3, 9, 8)]  # channels 0-1 and 2-4, one a thread
    np.testing.assert_array_equal(split, on_threads(1, forward))


@pytest.mark.parametrize("padding", [0, 1])
def test_one_images_max_pool_planes_split_between_threads_bit_for_bit(monkeypatch, rng, padding):
    from cnnkit.functional import pool

    x = rng.standard_normal((1, 6, 96, 96)).astype(np.float32)  # two parts of 64 KiB or more
    monkeypatch.setattr(pool, "MIN_PART_BYTES", 64 * 2**10)
    calls = []
    kernel = pool._running_maximum
    monkeypatch.setattr(
        pool, "_running_maximum", lambda xp, *a: calls.append(xp.shape) or kernel(xp, *a)
    )
    split = on_threads(2, lambda: F.max_pool2d(x, 3, 2, padding)[0])
    side = 96 + 2 * padding
    assert sorted(calls) == [(3, 1, side, side), (3, 1, side, side)]
    np.testing.assert_array_equal(split, on_threads(1, lambda: F.max_pool2d(x, 3, 2, padding)[0]))
    assert len(calls) == 3  # one thread: one call on all six planes
