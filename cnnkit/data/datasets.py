"""The built-in digits data set and the registry of data set names the CLI uses."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cnnkit.data.cifar import load_cifar10
from cnnkit.data.dataset import Dataset, DatasetError, Splits, resolve_data_dir
from cnnkit.data.folder import load_image_folder
from cnnkit.data.loader import train_val_split
from cnnkit.data.mnist import load_mnist


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Splits:
    """scikit-learn's bundled 8x8 digits (1,797 images) as float32 (N, 1, 8, 8) in [0, 1].

    Split stratified and deterministically (``seed``) into train and test; no files needed.
    Source: UCI Optical Recognition of Handwritten Digits (Alpaydin and Kaynak, 1998).
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise DatasetError(
            "the digits data set needs scikit-learn: pip install scikit-learn"
        ) from e
    bunch = sk_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # pixel values 0..16
    labels = bunch.target.astype(np.int64)
    train, test = train_val_split(len(labels), test_fraction, seed=seed, labels=labels)
    names = [str(d) for d in range(10)]
    return Splits(
        Dataset(images[train], labels[train], list(names), "digits/train"),
        Dataset(images[test], labels[test], list(names), "digits/test"),
    )


def load_folder_splits(
    path: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    grayscale: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    """An image folder as Splits: its ``train/`` and ``test/`` folders, else a stratified split."""
    root = Path(path).expanduser()
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = load_image_folder(root / "train", image_size, grayscale, f"{root.name}/train")
        test = load_image_folder(root / "test", image_size, grayscale, f"{root.name}/test")
        if train.class_names != test.class_names:
            raise DatasetError(
                f"{root / 'test'}: classes {test.class_names} differ from those in "
                f"{root / 'train'} ({train.class_names}); expected the same class folders"
            )
        return Splits(train, test)
    full = load_image_folder(root, image_size, grayscale)
    train_idx, test_idx = train_val_split(len(full), test_fraction, seed=seed, labels=full.labels)
    train, test = full.subset(train_idx), full.subset(test_idx)
    train.name, test.name = f"{full.name}/train", f"{full.name}/test"
    return Splits(train, test)


_REGISTRY: dict[str, tuple[str, Callable[..., Splits]]] = {
    "digits": (
        "scikit-learn's bundled 8x8 digits, 1,797 images (no files needed)",
        lambda data_dir, **kw: load_digits(**kw),
    ),
    "mnist": (
        "MNIST handwritten digits, 60,000 + 10,000 28x28 (DATA_DIR/mnist/)",
        lambda data_dir, **kw: load_mnist(data_dir, "mnist", **kw),
    ),
    "fashion-mnist": (
        "Fashion-MNIST clothing, 60,000 + 10,000 28x28 (DATA_DIR/fashion-mnist/)",
        lambda data_dir, **kw: load_mnist(data_dir, "fashion-mnist", **kw),
    ),
    "mnist-small": (
        "the MNIST test set split 8,000 + 2,000, MNIST format (DATA_DIR/mnist-small/)",
        lambda data_dir, **kw: load_mnist(data_dir, "mnist-small", **kw),
    ),
    "cifar10": (
        "CIFAR-10, 50,000 + 10,000 32x32 RGB (DATA_DIR/cifar-10-batches-py/)",
        lambda data_dir, **kw: load_cifar10(data_dir, **kw),
    ),
}

_ALIASES = {"fashion": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10"}


def list_datasets() -> list[str]:
    """Names load_dataset accepts (besides ``folder:PATH``)."""
    return list(_REGISTRY)


def describe_datasets() -> dict[str, str]:
    """One-line description of each data set name, ``folder:PATH`` included (for --help)."""
    descriptions = {name: text for name, (text, _) in _REGISTRY.items()}
    descriptions["folder:PATH"] = (
        "PATH/<class>/<images>, or PATH/train/ and PATH/test/ in that layout (Pillow)"
    )
    return descriptions


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, **options) -> Splits:
    """Load a data set by name (see list_datasets, or 'folder:PATH') as Splits(train, test).

    ``options`` go to that loader: verify= for the MNIST kinds; image_size=, grayscale= for
    folders; test_fraction=, seed= for digits and flat folders.
    """
    if name.lower().startswith("folder:"):
        return load_folder_splits(name[len("folder:") :], **options)
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise DatasetError(
            f"unknown data set {name!r}; expected one of {', '.join(_REGISTRY)} or folder:PATH"
        )
    if key != "digits":
        data_dir = resolve_data_dir(data_dir)
    return _REGISTRY[key][1](data_dir, **options)
