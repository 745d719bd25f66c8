"""The errors the command line reports in one line (exit status 2)."""

from __future__ import annotations

from cnnkit.data import DatasetError
from cnnkit.imagenet import ImageError
from cnnkit.io import CheckpointError
from cnnkit.recipe import RunError
from cnnkit.train import TrainingDiverged
from cnnkit.weights import WeightsError


class UsageError(ValueError):
    """The command line asks for something that cannot be done."""


USER_ERRORS = (
    UsageError,
    RunError,
    DatasetError,
    CheckpointError,
    TrainingDiverged,
    WeightsError,
    ImageError,
)
