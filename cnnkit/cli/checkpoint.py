"""A run's checkpoint on the command line: its model, its preprocessing and its test split."""

from __future__ import annotations

import numpy as np

from cnnkit import models
from cnnkit.cli.errors import UsageError
from cnnkit.data import load_dataset
from cnnkit.io import Checkpoint, CheckpointError, load_checkpoint, load_model_state


def restore_model(path: str) -> tuple[object, Checkpoint, dict]:
    """Rebuild the model of a checkpoint and return it with the checkpoint and its data info."""
    checkpoint = load_checkpoint(path)
    config = dict(checkpoint.config)
    if config.get("name") not in models.list():
        raise CheckpointError(f"checkpoint {path} names unknown model {config.get('name')!r}")
    model = models.get(**config)
    load_model_state(model, checkpoint, source=f"checkpoint {path}")
    data = checkpoint.training_state.get("metadata", {}).get("data")
    if data is None:
        raise CheckpointError(
            f"checkpoint {path} has no data metadata (not written by `cnnkit train`)"
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
