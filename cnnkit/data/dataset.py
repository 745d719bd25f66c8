"""The Dataset container, the Splits pair and the error every loader raises."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

DATA_ENV_VAR = "CNNKIT_DATA"


class DatasetError(ValueError):
    """A data set file or folder is missing or malformed; one line: file, fault, expectation."""


@dataclass(repr=False)
class Dataset:
    """Images and int64 labels: uint8 (N, H, W, C) 0..255, or float32 (N, C, H, W) in [0, 1].

    The dtype tells the layout apart: uint8 storage is channels-last and compact (CIFAR-10 train is
    150 MB as uint8, 600 MB as float32); ``DataLoader`` turns it into float32 NCHW one batch at a
    time. A uint8 (N, H, W) array is stored as (N, H, W, 1).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)
    name: str = ""

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images)
        self.labels = np.asarray(self.labels).astype(np.int64, copy=False)
        if self.images.dtype == np.uint8 and self.images.ndim == 3:
            self.images = self.images[..., None]
        if self.images.ndim != 4:
            raise ValueError(
                f"Dataset images must be uint8 (N, H, W, C) or float (N, C, H, W), "
                f"got shape {self.images.shape} dtype {self.images.dtype}"
            )
        if self.images.dtype != np.uint8 and not np.issubdtype(self.images.dtype, np.floating):
            raise ValueError(
                f"Dataset images must be uint8 or float, got dtype {self.images.dtype}"
            )
        if self.labels.shape != (len(self.images),):
            raise ValueError(
                f"Dataset labels must have shape ({len(self.images)},) to match the images, "
                f"got {self.labels.shape}"
            )
        if not self.class_names and len(self.labels):
            self.class_names = [str(i) for i in range(int(self.labels.max()) + 1)]
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise ValueError(
                f"Dataset labels must lie in 0..{self.num_classes - 1} ({self.num_classes} "
                f"class_names), got {self.labels.min()}..{self.labels.max()}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """Number of classes (len(class_names))."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one image as the model sees it."""
        if self.images.dtype == np.uint8:
            _, h, w, c = self.images.shape
            return (c, h, w)
        return tuple(self.images.shape[1:])

    def subset(self, indices: np.ndarray) -> Dataset:
        """A new Dataset holding the samples at ``indices`` (a copy)."""
        return Dataset(
            self.images[indices], self.labels[indices], list(self.class_names), self.name
        )

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n={len(self)}, image_shape={self.image_shape}, "
            f"storage={self.images.dtype}{list(self.images.shape)}, classes={self.num_classes})"
        )


class Splits(NamedTuple):
    """The train and test Datasets of one data set."""

    train: Dataset
    test: Dataset


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else $CNNKIT_DATA, else DatasetError."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_ENV_VAR) or None
        if data_dir is None:
            raise DatasetError(
                f"no data directory: pass data_dir (--data-dir) or set {DATA_ENV_VAR} to the "
                "folder holding the data sets (nothing is ever downloaded)"
            )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{path}: data directory does not exist or is not a directory")
    return path
