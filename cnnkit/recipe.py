"""A complete training run from plain settings: data, model, optimizer, schedule, fit, test, files.

This is what `cnnkit train` runs; it is equally usable from Python::

    metrics = cnnkit.recipe.run(TrainSettings(model="lenet5", dataset="mnist", data_dir="data"))

A run directory receives ``checkpoint.npz`` (after every epoch, atomically) and ``metrics.json``;
with ``plots`` also curves.png, confusion.png and filters.png (cnnkit.viz), with ``tensorboard``
a ``tensorboard/`` folder of tensorboardX event files (cnnkit.tensorboard). The directory is
locked for the run and never one holding other files (cnnkit.rundir). With ``interruptible``,
SIGINT or SIGTERM stop the run at the next step boundary with a checkpoint of that exact point
(cnnkit.train.TrainingInterrupted); resuming from it continues bit for bit.

With ``distributed`` the run is one rank of an MPI job (cnnkit.distributed): the global batch of
``batch_size`` is sharded over the ranks, evaluation too, and rank 0 alone writes files.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cnnkit import models, optim
from cnnkit.data import (
    Compose,
    DataLoader,
    Dataset,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShift,
    compute_mean_std,
    load_dataset,
    train_val_split,
)
from cnnkit.distributed import Communicator, run_on_root, sync_batch_norm
from cnnkit.io import Checkpoint, CheckpointError, atomic_write, load_checkpoint
from cnnkit.nn.loss import CrossEntropyLoss
from cnnkit.rundir import CHECKPOINT_NAME, METRICS_NAME, RunDirectory
from cnnkit.train import EarlyStopping, Trainer, evaluate

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "cosine", "xception")
AUGMENTATIONS = ("none", "shift", "crop-flip")


class RunError(ValueError):
    """The settings of a run cannot work (bad combination, unusable output directory)."""


@dataclass
class TrainSettings:
    """Everything `cnnkit train` takes; the defaults train a small CNN on the bundled digits."""

    model: str = "small_cnn"
    dataset: str = "digits"
    data_dir: str | None = None
    epochs: int = 15
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup: int = 0
    seed: int = 0
    augment: str = "none"
    val_split: float = 0.1
    limit: int | None = None
    patience: int | None = None
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    out: str | None = None
    resume: str | None = None
    overwrite: bool = False
    progress: bool = True
    model_options: dict = field(default_factory=dict)
    plots: bool = False
    tensorboard: bool = False
    distributed: bool = False
    sync_batch_norm: bool = False
    interruptible: bool = False


def build_optimizer(settings: TrainSettings, parameters) -> optim.Optimizer:
    """The optimizer named in the settings, with their learning rate and weight decay."""
    name = settings.optimizer
    if name == "sgd":
        return optim.SGD(
            parameters,
            lr=settings.lr,
            momentum=settings.momentum,
            nesterov=settings.momentum > 0,
            weight_decay=settings.weight_decay,
        )
    if name == "adam":
        return optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    if name == "adamw":
        return optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    if name == "rmsprop":
        return optim.RMSprop(
            parameters,
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
    raise RunError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


def build_scheduler(settings: TrainSettings, optimizer) -> optim.LRScheduler | None:
    """Per-epoch schedule: cosine to 0, step (x0.1 at 1/2 and 3/4), or Xception's x0.94 per 2."""
    decay_epochs = max(settings.epochs - settings.warmup, 1)
    schedule = settings.schedule
    if schedule == "none":
        after = None
    elif schedule == "cosine":
        after = optim.CosineAnnealingLR(optimizer, T_max=decay_epochs)
    elif schedule == "step":
        milestones = sorted({max(decay_epochs // 2, 1), max(3 * decay_epochs // 4, 1)})
        after = optim.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    elif schedule == "xception":
        after = optim.StepLR(optimizer, step_size=2, gamma=0.94)
    else:
        raise RunError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if settings.warmup:
        return optim.LinearWarmup(optimizer, settings.warmup, start_factor=0.1, after=after)
    return after


def build_augmentation(name: str, image_shape: tuple[int, int, int]):
    """Augmentation by name: small shifts (digits), or padded random crop + flip (photos)."""
    if name == "none":
        return None
    if name == "shift":
        return RandomShift(max(1, image_shape[1] // 14))
    if name == "crop-flip":
        return Compose(
            [RandomCrop(image_shape[1:], padding=image_shape[1] // 8), RandomHorizontalFlip()]
        )
    raise RunError(f"unknown augmentation {name!r}; expected one of {', '.join(AUGMENTATIONS)}")


def with_normalization(augmentation, mean, std):
    """Augment (if any) then normalise with the training set's per-channel statistics."""
    normalize = Normalize(mean, std)
    return normalize if augmentation is None else Compose([augmentation, normalize])


def output_path(settings: TrainSettings) -> Path:
    """The run directory: ``out``, or runs/MODEL-DATASET-TIME by default."""
    if settings.out is not None:
        return Path(settings.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{settings.model}-{settings.dataset.replace(':', '_')}-{stamp}"


def resumes_in_place(settings: TrainSettings, out: Path) -> bool:
    """Whether the run resumes from the checkpoint in its own run directory."""
    if settings.resume is None:
        return False
    return Path(settings.resume).resolve() == (out / CHECKPOINT_NAME).resolve()


def load_resume_checkpoint(settings: TrainSettings) -> Checkpoint | None:
    """The checkpoint to resume from, refused before anything is written if it does not fit."""
    if settings.resume is None:
        return None
    checkpoint = load_checkpoint(settings.resume)
    trained_on = checkpoint.training_state.get("metadata", {}).get("data", {}).get("dataset")
    if trained_on not in (None, settings.dataset):
        raise CheckpointError(
            f"checkpoint {settings.resume} was trained on {trained_on!r}, not {settings.dataset!r}"
        )
    return checkpoint


def data_metadata(train: Dataset, settings: TrainSettings, mean, std) -> dict:
    """What evaluate and predict need to feed new images the way training did."""
    return {
        "dataset": settings.dataset,
        "image_shape": list(train.image_shape),
        "class_names": list(train.class_names),
        "mean": [float(m) for m in np.atleast_1d(mean)],
        "std": [float(s) for s in np.atleast_1d(std)],
    }


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=2).encode()))


def check_extras(settings: TrainSettings) -> None:
    """Fail before any work when --plots or --tensorboard lack their optional package."""
    try:
        if settings.plots:
            from cnnkit.viz import require_matplotlib

            require_matplotlib()
        if settings.tensorboard:
            from cnnkit.tensorboard import require_tensorboardx

            require_tensorboardx()
    except ImportError as error:
        raise RunError(str(error)) from None


def write_plots(out: Path, model) -> list[str]:
    """--plots: curves.png, confusion.png and filters.png in the run directory."""
    from cnnkit.viz import VizError, plot_run

    try:
        return [str(path) for path in plot_run(out, model)]
    except VizError as error:
        raise RunError(f"--plots: {error}") from None


def rank_part(indices: np.ndarray, communicator: Communicator | None) -> np.ndarray:
    """This rank's share of an evaluation set: every size-th sample from its rank on."""
    if communicator is None:
        return indices
    return indices[communicator.rank :: communicator.size]


def train_loader_for(settings, train_set, train_idx, transform, communicator) -> DataLoader:
    """Shuffled training batches; with K ranks, this rank's shard of each global batch.

    A last batch smaller than K cannot be shared out, so with K ranks it is dropped.
    """
    shard, drop_last = None, False
    if communicator is not None:
        shard = (communicator.rank, communicator.size)
        drop_last = 0 < len(train_idx) % settings.batch_size < communicator.size
    return DataLoader(
        train_set.images,
        train_set.labels,
        settings.batch_size,
        shuffle=True,
        seed=settings.seed,
        transform=transform,
        indices=train_idx,
        shard=shard,
        drop_last=drop_last,
    )


def limited(dataset: Dataset, limit: int | None) -> Dataset:
    """The first ``limit`` samples of ``dataset`` (all of them without a limit)."""
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.subset(np.arange(limit))


def run(settings: TrainSettings, on_start=None) -> dict:
    """Train, evaluate on the test split, write metrics.json and the checkpoint; return metrics.

    ``on_start(out, model, data)``, when given, is called once on the root rank before the first
    step, with the run directory, the model and the data metadata its checkpoints will record
    (`cnnkit train --explore` starts the explorer there)."""
    started = time.perf_counter()
    check_extras(settings)
    if settings.sync_batch_norm and not settings.distributed:
        raise RunError("sync_batch_norm needs distributed training (--distributed)")
    resume = load_resume_checkpoint(settings)
    communicator = Communicator() if settings.distributed else None
    with ExitStack() as stack:
        path = output_path(settings)
        directory = RunDirectory(path, resumes_in_place(settings, path), settings.overwrite)
        out = run_on_root(communicator, lambda: stack.enter_context(directory))
        return train_in(out, settings, resume, communicator, started, on_start)


def train_in(
    out: Path,
    settings: TrainSettings,
    resume: Checkpoint | None,
    communicator: Communicator | None,
    started: float,
    on_start=None,
) -> dict:
    """The body of :func:`run` once the run directory ``out`` is held."""
    splits = load_dataset(settings.dataset, settings.data_dir)
    train_set = limited(splits.train, settings.limit)
    test_set = limited(splits.test, settings.limit)
    train_idx, val_idx = train_val_split(
        len(train_set), settings.val_split, seed=settings.seed, labels=train_set.labels
    )
    mean, std = compute_mean_std(train_set.images[train_idx])
    std = np.maximum(std, 1e-6)
    augmentation = build_augmentation(settings.augment, train_set.image_shape)
    train_loader = train_loader_for(
        settings, train_set, train_idx, with_normalization(augmentation, mean, std), communicator
    )
    evaluation = with_normalization(None, mean, std)
    val_loader = None
    if len(val_idx):
        val_loader = DataLoader(
            train_set.images,
            train_set.labels,
            256,
            transform=evaluation,
            indices=rank_part(val_idx, communicator),
            seed=0,
        )
    test_loader = DataLoader(
        test_set.images,
        test_set.labels,
        256,
        transform=evaluation,
        indices=rank_part(np.arange(len(test_set.labels)), communicator),
        seed=0,
    )

    options = dict(settings.model_options)
    if models.takes_option(settings.model, "input_size"):
        options.setdefault("input_size", list(train_set.image_shape[1:]))
    model = models.get(
        settings.model,
        num_classes=train_set.num_classes,
        in_channels=train_set.image_shape[0],
        seed=settings.seed,
        **options,
    )
    if settings.sync_batch_norm:
        sync_batch_norm(model, communicator)
    optimizer = build_optimizer(settings, model.parameters())
    scheduler = build_scheduler(settings, optimizer)
    callbacks = [] if settings.patience is None else [EarlyStopping("val_loss", settings.patience)]
    logger = None
    is_root = communicator is None or communicator.is_root
    if settings.tensorboard and is_root:
        from cnnkit.tensorboard import TensorBoardLogger

        logger = TensorBoardLogger(out / "tensorboard")
        callbacks.append(logger)
    data = data_metadata(train_set, settings, mean, std)
    trainer = Trainer(
        model,
        optimizer,
        loss_fn=CrossEntropyLoss(label_smoothing=settings.label_smoothing),
        scheduler=scheduler,
        callbacks=callbacks,
        grad_clip=settings.grad_clip,
        checkpoint_path=out / CHECKPOINT_NAME,
        progress=settings.progress,
        communicator=communicator,
        interruptible=settings.interruptible,
        metadata={
            "data": data,
            "settings": asdict(settings),
        },
    )
    if resume is not None:
        trainer.resume(resume, train_loader, source=f"checkpoint {settings.resume}")
    if on_start is not None and is_root:
        on_start(out, model, data)
    try:
        trainer.fit(train_loader, settings.epochs, val_loader)
    finally:
        if logger is not None:
            logger.close()
    test = evaluate(
        model, test_loader, num_classes=train_set.num_classes, communicator=communicator
    )
    metrics = {
        "model": settings.model,
        "dataset": settings.dataset,
        "epochs": trainer.epoch,
        "test_accuracy": test["accuracy"],
        "test_top5_accuracy": test["top5_accuracy"],
        "test_loss": test["loss"],
        "confusion_matrix": test["confusion_matrix"].tolist(),
        "class_names": list(train_set.class_names),
        "history": trainer.history,
        "elapsed_seconds": time.perf_counter() - started,
        "parameters": model.num_parameters(),
        "ranks": 1 if communicator is None else communicator.size,
        "settings": asdict(settings),
        "checkpoint": str(out / CHECKPOINT_NAME),
    }
    if is_root:
        write_json(out / METRICS_NAME, metrics)
        if settings.plots:
            metrics["plots"] = write_plots(out, model)
    metrics["out"] = str(out)
    return metrics
