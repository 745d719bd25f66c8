"""The fit loop: exact resume, NaN guard, early stopping, clipping, metrics, a real digits run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
from cnnkit.data import Compose, DataLoader, Normalize, RandomShift
from cnnkit.metrics import accuracy, confusion_matrix
from cnnkit.recipe import TrainSettings, run
from cnnkit.train import (
    EarlyStopping,
    Trainer,
    TrainingDiverged,
    clip_grad_norm,
    evaluate,
    predict_proba,
)


def toy_data(n: int = 96, seed: int = 0):
    """Two-class 8x8 images: class 1 has a bright centre, so a CNN can learn it quickly."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    images = rng.normal(0, 0.3, size=(n, 1, 8, 8)).astype(np.float32)
    images[labels == 1, :, 2:6, 2:6] += 1.0
    return images, labels


def make_trainer(tmp_path=None, lr=3e-3, seed=0):
    model = ck.models.get("small_cnn", num_classes=2, in_channels=1, input_size=8, seed=seed)
    optimizer = ck.optim.Adam(model.parameters(), lr=lr)
    scheduler = ck.optim.CosineAnnealingLR(optimizer, T_max=4)
    path = None if tmp_path is None else tmp_path / "checkpoint.npz"
    return Trainer(model, optimizer, scheduler=scheduler, checkpoint_path=path, progress=False)


def make_loader(images, labels):
    transform = Compose([RandomShift(1), Normalize(0.1, 0.5)])
    return DataLoader(images, labels, batch_size=16, shuffle=True, seed=5, transform=transform)


def test_resume_continues_bit_for_bit(tmp_path):
    images, labels = toy_data()
    straight = make_trainer()
    straight.fit(make_loader(images, labels), epochs=4)

    first = make_trainer(tmp_path)
    first.fit(make_loader(images, labels), epochs=2)
    resumed = make_trainer()
    loader = make_loader(images, labels)
    resumed.resume(tmp_path / "checkpoint.npz", loader)
    assert resumed.epoch == 2
    resumed.fit(loader, epochs=4)

    for key, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[key], value, err_msg=key)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]


def test_training_reduces_loss_and_logs_history():
    images, labels = toy_data()
    trainer = make_trainer()
    val = DataLoader(images, labels, batch_size=32, transform=Normalize(0.1, 0.5))
    history = trainer.fit(make_loader(images, labels), epochs=4, val_loader=val)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["val_accuracy"] > 0.9
    assert {"lr", "seconds", "images_per_second", "val_loss"} <= set(history[0])


class NaNAfter(ck.nn.CrossEntropyLoss):
    """Cross-entropy that returns NaN from its ``after``-th call on."""

    def __init__(self, after: int):
        super().__init__()
        self.calls, self.after = 0, after

    def __call__(self, logits, target):
        self.calls += 1
        loss = super().__call__(logits, target)
        return float("nan") if self.calls >= self.after else loss


def test_nan_loss_stops_before_the_update_and_keeps_the_checkpoint(tmp_path):
    images, labels = toy_data()
    trainer = make_trainer(tmp_path)
    loader = make_loader(images, labels)
    trainer.fit(loader, epochs=1)
    saved = (tmp_path / "checkpoint.npz").read_bytes()
    weights = trainer.model.state_dict()
    trainer.loss_fn = NaNAfter(after=3)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 3; .*kept"):
        trainer.fit(loader, epochs=3)
    assert (tmp_path / "checkpoint.npz").read_bytes() == saved
    changed = trainer.model.state_dict()
    assert any(not np.array_equal(weights[k], changed[k]) for k in weights)  # steps 1-2 applied
    assert all(np.isfinite(v).all() for v in changed.values() if v.dtype.kind == "f")


def test_early_stopping_stops_when_the_metric_stalls():
    images, labels = toy_data()
    trainer = make_trainer(lr=0.0)
    trainer.scheduler = None
    trainer.callbacks = [EarlyStopping("loss", patience=2)]
    trainer.fit(make_loader(images, labels), epochs=10)
    assert len(trainer.history) < 10


def test_early_stopping_rejects_unknown_metric():
    images, labels = toy_data()
    trainer = make_trainer()
    trainer.callbacks = [EarlyStopping("val_loss", patience=1)]
    with pytest.raises(
        ValueError, match="monitors 'val_loss', which is not among the epoch metrics"
    ):
        trainer.fit(make_loader(images, labels), epochs=1)


def test_early_stopping_patience_must_be_positive():
    with pytest.raises(ValueError, match="patience must be >= 1, got 0"):
        EarlyStopping(patience=0)


def test_grad_clip_must_be_positive():
    model = ck.models.get("small_cnn", num_classes=2, in_channels=1, input_size=8)
    with pytest.raises(ValueError, match="grad_clip must be positive, got -1"):
        Trainer(model, ck.optim.SGD(model.parameters(), lr=0.1), grad_clip=-1)


def test_clip_grad_norm_matches_torch(rng):
    grads = [rng.standard_normal(s) for s in [(3, 4), (5,), (2, 2, 2)]]
    params = [ck.nn.Parameter(np.zeros_like(g)) for g in grads]
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, t, g in zip(params, tensors, grads, strict=True):
        p.grad[...] = g
        t.grad = torch.tensor(g)
    norm = clip_grad_norm(params, max_norm=1.5)
    torch_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm=1.5)
    assert norm == pytest.approx(float(torch_norm), rel=1e-12)
    for p, t in zip(params, tensors, strict=True):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


def test_evaluate_and_metrics_agree_with_direct_computation(rng):
    images, labels = toy_data(64)
    model = ck.models.get("small_cnn", num_classes=2, in_channels=1, input_size=8).eval()
    loader = DataLoader(images, labels, batch_size=10)
    result = evaluate(model, loader, num_classes=2)
    logits = model(images)
    assert result["accuracy"] == pytest.approx(accuracy(logits, labels))
    assert result["loss"] == pytest.approx(ck.nn.CrossEntropyLoss()(logits, labels), rel=1e-5)
    assert result["top5_accuracy"] == 1.0
    np.testing.assert_array_equal(
        result["confusion_matrix"], confusion_matrix(labels, logits.argmax(1), 2)
    )
    probabilities = predict_proba(model, images, batch_size=7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(probabilities.argmax(1), logits.argmax(1))
    kept = predict_proba(ck.nn.Sequential(model, ck.nn.Softmax(1)), images, 7, "probabilities")
    np.testing.assert_allclose(kept, probabilities, rtol=1e-5)
    with pytest.raises(ValueError, match="outputs must be 'logits' or 'probabilities', got 'x'"):
        predict_proba(model, images, outputs="x")


def test_top_k_accuracy_and_confusion_matrix_by_hand():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([2, 0, 0])
    assert accuracy(scores, labels, k=1) == pytest.approx(1 / 3)
    assert accuracy(scores, labels, k=2) == pytest.approx(2 / 3)
    expected = np.zeros((3, 3), int)
    expected[2, 1] = expected[0, 0] = expected[0, 2] = 1
    np.testing.assert_array_equal(confusion_matrix(labels, scores.argmax(1), 3), expected)


def test_default_recipe_reaches_97_percent_on_digits(tmp_path):
    metrics = run(TrainSettings(out=str(tmp_path / "run"), progress=False))
    assert metrics["test_accuracy"] >= 0.97
    assert (tmp_path / "run" / "metrics.json").exists()
    assert (tmp_path / "run" / "checkpoint.npz").exists()


def test_lenet5_reaches_97_5_percent_on_mnist_small(tmp_path, real_data_dir):
    settings = TrainSettings(
        model="lenet5",
        dataset="mnist-small",
        data_dir=str(real_data_dir("mnist-small")),
        epochs=10,
        out=str(tmp_path / "run"),
        progress=False,
    )
    assert run(settings)["test_accuracy"] >= 0.975
