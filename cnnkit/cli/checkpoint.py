"""A run's checkpoint on the command line: its model, its preprocessing and its test split."""

from __future__ import annotations

import numpy as np

from cnnkit import models
from cnnkit.cli.errors import UsageError
from cnnkit.data import load_dataset
from cnnkit.io import Checkpoint, CheckpointError, load_checkpoint, load_model_state

DATA_KEYS = ("dataset", "image_shape", "class_names", "mean", "std")


def restore_model(path: str) -> tuple[object, Checkpoint, dict]:
    """Rebuild the model of a checkpoint and return it with the checkpoint and its data info."""
    checkpoint = load_checkpoint(path)
    config = dict(checkpoint.config)
    if config.get("name") not in models.list():
        raise CheckpointError(f"checkpoint {path} names unknown model {config.get('name')!r}")
    try:
        model = models.get(**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} holds a model config cnnkit cannot build ({error})"
        ) from None
    load_model_state(model, checkpoint, source=f"checkpoint {path}")
    metadata = checkpoint.training_state.get("metadata")
    data = metadata.get("data") if isinstance(metadata, dict) else None
    if data is None:
        raise CheckpointError(
            f"checkpoint {path} has no data metadata (not written by `cnnkit train`)"
        )
    if not isinstance(data, dict) or not all(key in data for key in DATA_KEYS):
        raise CheckpointError(
            f"checkpoint {path} has corrupt data metadata (expected {', '.join(DATA_KEYS)})"
        )
    model.eval()
    return model, checkpoint, data


def normalize(images: np.ndarray, data: dict) -> np.ndarray:
    """Apply the training run's per-channel normalisation to float images in [0, 1]."""
    mean = np.asarray(data["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(data["std"], np.float32).reshape(1, -1, 1, 1)
    return (images - mean) / std


def load_test_split(dataset: str, data_dir: str | None, data: dict, checkpoint: str):
    """The test split of ``dataset``, refused unless its images fit the checkpoint's model."""
    test = load_dataset(dataset, data_dir).test
    if list(test.image_shape) != list(data["image_shape"]):
        raise UsageError(
            f"data set {dataset!r} has images of shape {test.image_shape}, but the model in "
            f"{checkpoint} expects {tuple(data['image_shape'])}"
        )
    return test
