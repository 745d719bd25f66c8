"""Training and evaluation: the fit loop, metrics, callbacks, checkpoints and progress bars.

One step is the textbook loop: logits = model(x); L = loss(logits, y); model.backward(dL/dlogits);
optimizer.step(). A non-finite loss stops training before the weights change, and the last good
checkpoint (written atomically at the end of each epoch) stays intact.

An ``interruptible`` trainer turns SIGINT (Ctrl-C) and SIGTERM into a request to stop at the next
step boundary: it writes a checkpoint of that exact point (mid-epoch: the loader's position, the
partial epoch sums, every random state) and raises :class:`TrainingInterrupted`; resuming from
that checkpoint continues bit for bit as if training had never stopped.

With a ``communicator`` (cnnkit.distributed) the same loop runs data-parallel: each rank gets its
shard of the global batch, scales its loss gradient by its share b_r / B, and the gradients are
summed over the ranks before the update; loss and accuracy are those of the global batch, and
rank 0 alone shows progress and writes checkpoints.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from cnnkit.distributed import (
    Communicator,
    GradientAllreduce,
    broadcast_buffers,
    broadcast_state,
    split_generators,
)
from cnnkit.interrupt import StopSignals, TrainingInterrupted
from cnnkit.io import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from cnnkit.metrics import confusion_matrix, top_k_correct
from cnnkit.nn.container import Sequential
from cnnkit.nn.conv import Conv2d
from cnnkit.nn.grad_mode import no_grad
from cnnkit.nn.loss import CrossEntropyLoss
from cnnkit.nn.module import Module, Parameter


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped before applying the bad step."""


def clip_grad_norm(parameters: Sequence[Parameter], max_norm: float) -> float:
    """Scale all gradients by max_norm / (||g||_2 + 1e-6) when the global norm exceeds max_norm."""
    total = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in parameters))
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for p in parameters:
            p.grad *= p.grad.dtype.type(scale)
    return total


def evaluate(
    model: Module,
    loader: Iterable,
    loss_fn=None,
    num_classes: int | None = None,
    progress: bool = False,
    communicator: Communicator | None = None,
) -> dict:
    """Loss, top-1 and top-5 accuracy (and the confusion matrix if num_classes is given).

    With a ``communicator`` each rank evaluates its own part of the data (its loader) and the
    sums are reduced, so every rank returns the metrics of the whole set.
    """
    loss_fn = CrossEntropyLoss() if loss_fn is None else loss_fn
    was_training = model.training
    model.eval()
    total_loss, seen, top1, top5 = 0.0, 0, 0, 0
    confusion = None if num_classes is None else np.zeros((num_classes, num_classes), np.int64)
    for x, y in tqdm(loader, desc="evaluate", disable=not progress, leave=False, unit="batch"):
        with no_grad():
            logits = model(x)
            total_loss += loss_fn(logits, y) * len(y)
        seen += len(y)
        top1 += top_k_correct(logits, y, 1)
        top5 += top_k_correct(logits, y, 5)
        if confusion is not None:
            confusion += confusion_matrix(y, logits.argmax(axis=1), num_classes)
    model.train(was_training)
    if communicator is not None:
        totals = communicator.allreduce(np.array([total_loss, seen, top1, top5], np.float64))
        total_loss, (seen, top1, top5) = totals[0], totals[1:].astype(np.int64)
        if confusion is not None:
            confusion = communicator.allreduce(confusion)
    if seen == 0:
        raise ValueError("evaluate got an empty loader")
    result = {"loss": total_loss / seen, "accuracy": top1 / seen, "top5_accuracy": top5 / seen}
    if confusion is not None:
        result["confusion_matrix"] = confusion
    return result


def first_layer(model: Module) -> Module:
    """The layer that receives the model's input: the first child, through Sequential models
    (containers whose backward is Sequential's, which returns what the first child returns)."""
    layer = model
    while type(layer).backward is Sequential.backward:
        first = next(iter(layer.children()), None)
        if first is None:
            break
        layer = first
    return layer


@contextmanager
def skip_input_gradient(model: Module) -> Iterator[None]:
    """Inside, a model whose first layer is a Conv2d skips dL/d(input) in backward, which then
    returns None: the data needs no gradient (PyTorch skips an input without requires_grad).

    Other models are left as they are. The layer computes its input gradient again on exit.
    """
    layer = first_layer(model)
    if not isinstance(layer, Conv2d) or not layer.input_gradient:
        yield
        return
    layer.input_gradient = False
    try:
        yield
    finally:
        layer.input_gradient = True


def predict_proba(
    model: Module, images: np.ndarray, batch_size: int = 256, outputs: str = "logits"
) -> np.ndarray:
    """Softmax probabilities (N, K) for images (N, C, H, W), in eval mode, batch by batch;
    ``outputs="probabilities"`` for a model whose outputs already are (they are kept)."""
    if outputs not in ("logits", "probabilities"):
        raise ValueError(
            f"predict_proba outputs must be 'logits' or 'probabilities', got {outputs!r}"
        )
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        with no_grad():
            scores = model(images[start : start + batch_size]).astype(np.float64)
        if outputs == "probabilities":
            chunks.append(scores)
            continue
        scores -= scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        chunks.append(e / e.sum(axis=1, keepdims=True))
    model.train(was_training)
    return np.concatenate(chunks)


class StepResult(NamedTuple):
    """What one training step saw: mean loss, samples and correct top-1 predictions."""

    loss: float
    count: int
    correct: int


class Callback:
    """Hooks called by :class:`Trainer`; set ``trainer.stop_training = True`` to stop."""

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        """Called after each epoch with that epoch's metrics."""

    def state_dict(self) -> dict:
        """What a checkpoint must hold for a resumed run to call back exactly as this one."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs (Keras)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {patience!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = -1.0 if "loss" in monitor else 1.0
        self.best = -math.inf
        self.wait = 0

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which is not among the epoch metrics "
                f"{sorted(logs)}"
            )
        score = self.sign * logs[self.monitor]
        if score > self.best + self.min_delta:
            self.best, self.wait = score, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.stop_training = True

    def state_dict(self) -> dict:
        """The best score so far (None before the first epoch) and the epochs waited since."""
        return {"best": None if self.best == -math.inf else self.best, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.best = -math.inf if state["best"] is None else float(state["best"])
        self.wait = int(state["wait"])


class Trainer:
    """Keras-style fit loop over a model, an optimizer and a loss, with resumable checkpoints.

    ``checkpoint_path`` (a .npz file) receives the model, the optimizer, the scheduler, the
    data order and every random generator after each epoch, so that :meth:`resume` continues
    exactly as if training had not stopped. ``metadata`` (JSON-ready) is stored alongside, e.g.
    the preprocessing that evaluation and prediction must repeat. ``communicator`` trains
    data-parallel over MPI ranks (see the module docstring); the loaders must then be sharded.
    ``interruptible`` makes :meth:`fit` stop on SIGINT/SIGTERM at the next step boundary with a
    checkpoint of that point (see the module docstring).
    """

    def __init__(
        self,
        model: Module,
        optimizer,
        loss_fn=None,
        scheduler=None,
        callbacks: Sequence[Callback] = (),
        grad_clip: float | None = None,
        checkpoint_path: str | Path | None = None,
        progress: bool = True,
        metadata: dict | None = None,
        communicator: Communicator | None = None,
        interruptible: bool = False,
    ):
        if grad_clip is not None and grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive, got {grad_clip!r}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loss_fn = CrossEntropyLoss() if loss_fn is None else loss_fn
        self.callbacks = list(callbacks)
        self.grad_clip = grad_clip
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.progress = progress
        self.metadata = dict(metadata or {})
        self.history: list[dict] = []
        self.epoch = 0
        self.stop_training = False
        self.communicator = communicator
        self._allreduce_gradients = None
        self._generators_split = False
        self.interruptible = interruptible
        self._signals: StopSignals | None = None
        self._partial: dict | None = None  # sums of an epoch resumed from its middle

    @property
    def is_root(self) -> bool:
        """True where progress is shown and files are written: always, or on rank 0."""
        return self.communicator is None or self.communicator.is_root

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        """One forward, backward and update on a batch (or this rank's shard of it).

        A non-finite loss returns before the gradients are touched; the caller stops there.
        """
        if self.communicator is not None and self._allreduce_gradients is None:
            self._join_ranks()
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        count, correct, share = len(y), top_k_correct(logits, y, 1), 1.0
        if self.communicator is not None:
            local = np.array([count, loss * count, correct], np.float64)
            total, loss_sum, total_correct = self.communicator.allreduce(local)
            share, loss = count / total, float(loss_sum / total)
            count, correct = int(total), int(total_correct)
        if not math.isfinite(loss):
            return StepResult(loss, count, correct)
        self.model.zero_grad()
        dlogits = self.loss_fn.backward()
        if share != 1.0:
            dlogits *= dlogits.dtype.type(share)
        with skip_input_gradient(self.model):
            self.model.backward(dlogits)
        if self._allreduce_gradients is not None:
            self._allreduce_gradients()
        if self.grad_clip is not None:
            clip_grad_norm(self.optimizer_parameters(), self.grad_clip)
        self.optimizer.step()
        return StepResult(loss, count, correct)

    def optimizer_parameters(self) -> list[Parameter]:
        """Every parameter the optimizer updates."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _diverged(self, loss: float, step: int) -> TrainingDiverged:
        kept = (
            f"the last good checkpoint {self.checkpoint_path} is kept"
            if self.checkpoint_path is not None and self.checkpoint_path.exists()
            else "no checkpoint was written"
        )
        return TrainingDiverged(
            f"loss became {loss} at epoch {self.epoch + 1}, step {step}; training stopped before "
            f"the update ({kept}); try a lower learning rate or gradient clipping"
        )

    def _join_ranks(self) -> None:
        """Start every rank from rank 0's weights, with its own dropout stream."""
        communicator = self.communicator
        broadcast_state(communicator, self.model)
        if not self._generators_split:
            split_generators(communicator, self.model)
            self._generators_split = True
        self._allreduce_gradients = GradientAllreduce(communicator, self.optimizer_parameters())

    def fit(self, train_loader, epochs: int, val_loader=None) -> list[dict]:
        """Train until ``epochs`` epochs are done in total (counting resumed ones)."""
        self.stop_training = False
        if self.communicator is not None:
            self._join_ranks()
        self._signals = StopSignals() if self.interruptible else None
        try:
            if self._signals is not None:
                self._signals.__enter__()
            while self.epoch < epochs and not self.stop_training:
                self._fit_epoch(train_loader, epochs, val_loader)
                if self.epoch < epochs and not self.stop_training and self._stop_requested():
                    raise self._interrupted(0, len(train_loader))
        finally:
            if self._signals is not None:
                self._signals.__exit__()
        return self.history

    def _fit_epoch(self, train_loader, epochs: int, val_loader) -> None:
        logs = self._train_epoch(train_loader, epochs)
        if self.communicator is not None:
            broadcast_buffers(self.communicator, self.model)
        if val_loader is not None:
            val = evaluate(self.model, val_loader, self.loss_fn, communicator=self.communicator)
            logs.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        if self.scheduler is not None:
            self.scheduler.step()
        self.history.append(logs)
        self.epoch += 1
        if self.checkpoint_path is not None and self.is_root:
            self.save(self.checkpoint_path, train_loader)
        for callback in self.callbacks:
            callback.on_epoch_end(self, logs)

    def _stop_requested(self) -> bool:
        """Whether a signal asked to stop, on any rank (every rank then stops at this step)."""
        if self._signals is None:
            return False
        received = self._signals.received is not None
        if self.communicator is None:
            return received
        flags = self.communicator.allreduce(np.array([float(received)], np.float64))
        return bool(flags[0] > 0)

    def _interrupted(self, step: int, steps: int) -> TrainingInterrupted:
        saved = self.checkpoint_path if self.checkpoint_path is not None else None
        received = self._signals.received if self._signals is not None else None
        return TrainingInterrupted(
            received or signal.SIGINT, self.epoch + (1 if step else 0), step, steps, saved
        )

    def _train_epoch(self, loader, epochs: int) -> dict:
        self.model.train()
        lr = self.optimizer.param_groups[0]["lr"]
        partial, self._partial = self._partial or {}, None
        done = int(partial.get("step", 0))
        total_loss = float(partial.get("loss_sum", 0.0))
        seen, correct = int(partial.get("seen", 0)), int(partial.get("correct", 0))
        start = time.perf_counter() - float(partial.get("seconds", 0.0))
        bar = tqdm(
            total=len(loader),
            initial=done,
            desc=f"epoch {self.epoch + 1}/{epochs}",
            disable=not (self.progress and self.is_root),
            unit="batch",
            dynamic_ncols=True,
        )
        with bar:
            for step, (x, y) in enumerate(loader, start=done + 1):
                result = self.train_step(x, y)
                if not math.isfinite(result.loss):
                    raise self._diverged(result.loss, step)
                total_loss += result.loss * result.count
                seen += result.count
                correct += result.correct
                elapsed = time.perf_counter() - start
                bar.set_postfix(
                    loss=f"{total_loss / seen:.4f}",
                    acc=f"{correct / seen:.4f}",
                    img_s=f"{seen / max(elapsed, 1e-9):.0f}",
                )
                bar.update()
                if step < len(loader) and self._stop_requested():
                    sums = {"step": step, "loss_sum": total_loss, "seen": seen, "correct": correct}
                    if self.checkpoint_path is not None and self.is_root:
                        self.save(self.checkpoint_path, loader, {**sums, "seconds": elapsed})
                    raise self._interrupted(step, len(loader))
        elapsed = time.perf_counter() - start
        return {
            "epoch": self.epoch + 1,
            "loss": total_loss / max(seen, 1),
            "accuracy": correct / max(seen, 1),
            "lr": lr,
            "seconds": elapsed,
            "images_per_second": seen / max(elapsed, 1e-9),
        }

    def state(self, train_loader=None, partial_epoch: dict | None = None) -> dict:
        """Everything besides the weights needed to continue training exactly.

        ``partial_epoch`` holds the sums of an epoch stopped in its middle (steps done, loss sum,
        samples, correct predictions, seconds), from which :meth:`resume` continues it.
        """
        state = {
            "epoch": self.epoch,
            "history": self.history,
            "metadata": self.metadata,
            "optimizer": self.optimizer.state_dict(),
            "generators": {
                name: rng.bit_generator.state for name, rng in self.model.named_generators()
            },
            "callbacks": {
                type(callback).__name__: callback.state_dict()
                for callback in self.callbacks
                if callback.state_dict()
            },
        }
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if train_loader is not None and hasattr(train_loader, "get_state"):
            state["loader"] = train_loader.get_state()
        if partial_epoch is not None:
            state["partial_epoch"] = dict(partial_epoch)
        return state

    def save(self, path: str | Path, train_loader=None, partial_epoch: dict | None = None) -> Path:
        """Write an atomic checkpoint of the model and the training state to ``path``."""
        return save_checkpoint(path, self.model, self.state(train_loader, partial_epoch))

    def resume(
        self, checkpoint: str | Path | Checkpoint, train_loader=None, source: str | None = None
    ) -> None:
        """Restore model, optimizer, scheduler, data order, generators and callbacks from a
        checkpoint (a path or a loaded :class:`cnnkit.io.Checkpoint`), also from mid-epoch."""
        if not isinstance(checkpoint, Checkpoint):
            source = source or f"checkpoint {checkpoint}"
            checkpoint = load_checkpoint(checkpoint)
        source = source or "checkpoint"
        load_model_state(self.model, checkpoint, source=source)
        state = checkpoint.training_state
        missing = {"epoch", "history", "optimizer"} - set(state)
        if missing:
            raise CheckpointError(
                f"{source} has no training state ({', '.join(sorted(missing))}); it cannot be "
                "resumed (was it written by cnnkit.io.save?)"
            )
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and "scheduler" in state:
                self.scheduler.load_state_dict(state["scheduler"])
            if train_loader is not None and "loader" in state:
                train_loader.set_state(state["loader"])
            generators = dict(self.model.named_generators())
            for name, rng_state in state.get("generators", {}).items():
                if name in generators:
                    generators[name].bit_generator.state = rng_state
            callbacks = state.get("callbacks", {})
            for callback in self.callbacks:
                if type(callback).__name__ in callbacks:
                    callback.load_state_dict(callbacks[type(callback).__name__])
            self.epoch = int(state["epoch"])
            self.history = list(state["history"])
            self._partial = state.get("partial_epoch")
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{source} has a malformed training state ({error!r})") from None
        self._generators_split = False
