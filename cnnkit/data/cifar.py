"""CIFAR-10 from its python batches (Krizhevsky, 2009; www.cs.toronto.edu/~kriz/cifar.html).

Each batch is a protocol-2 pickle of a dict: b'data' uint8 (n, 3072) holding 1024 red, 1024 green,
then 1024 blue values (each plane row-major 32 x 32), b'labels' (n ints 0-9), b'batch_label',
b'filenames'; batches.meta holds b'label_names'. The pickles are read with an unpickler that only
builds NumPy arrays, so a hostile file cannot run code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import Dataset, DatasetError, Splits, resolve_data_dir

CIFAR10_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SUBDIRS = (CIFAR10_DIR, f"cifar10/{CIFAR10_DIR}", f"cifar-10/{CIFAR10_DIR}", "cifar10", "cifar-10")

# The two callables NumPy's array pickles need (found without importing private modules).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]


class _ArrayUnpickler(pickle.Unpickler):
    """An Unpickler that builds plain containers and NumPy arrays, and refuses everything else."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            if name == "_reconstruct":
                return _RECONSTRUCT
            if name == "scalar":
                return _SCALAR
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in a protocol-2 pickle from Python 3
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: missing, one of the CIFAR-10 python batches expected") from e
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror})") from e
    except Exception as e:  # truncated or foreign pickles fail in many ways
        raise DatasetError(f"{path}: not a readable CIFAR-10 pickle ({e})") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: holds a {type(obj).__name__}, expected a dict")
    return obj


def _get(batch: dict, key: str, path: Path):
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DatasetError(f"{path}: no {key!r} entry, expected keys b'data' and b'labels'")


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file as uint8 (n, 32, 32, 3) images and int64 (n,) labels."""
    path = Path(path)
    batch = _unpickle(path)
    data = np.asarray(_get(batch, "data", path))
    labels = np.asarray(_get(batch, "labels", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(
            f"{path}: data is {data.dtype} {data.shape}, expected uint8 (n, 3072) "
            "(3 planes of 32 x 32)"
        )
    if labels.shape != (len(data),):
        raise DatasetError(
            f"{path}: {labels.size} labels for {len(data)} images, expected one each"
        )
    if not np.issubdtype(labels.dtype, np.integer) or (
        len(labels) and (labels.min() < 0 or labels.max() > 9)
    ):
        raise DatasetError(f"{path}: labels must be integers 0..9, got {labels.dtype} values")
    # (n, 3072) -> (n, C, H, W) planes -> channels-last (n, H, W, C), compact uint8
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


def find_cifar10_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the CIFAR-10 batches: ``data_dir`` or one of its usual sub-folders."""
    root = resolve_data_dir(data_dir)
    for folder in (root, *(root / s for s in SUBDIRS)):
        if (folder / "batches.meta").is_file() or (folder / TEST_BATCH).is_file():
            return folder
    raise DatasetError(
        f"{root}: no CIFAR-10 python batches (batches.meta, data_batch_1..5, test_batch) in it "
        f"or in {root / CIFAR10_DIR}"
    )


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Splits:
    """CIFAR-10 as uint8 (N, 32, 32, 3) images: 50,000 train, 10,000 test, 10 class names."""
    folder = find_cifar10_dir(data_dir)
    meta_path = folder / "batches.meta"
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _get(
        _unpickle(meta_path), "label_names", meta_path
    )]  # fmt: skip
    if len(names) != 10:
        raise DatasetError(f"{meta_path}: {len(names)} label_names, expected 10")
    parts = [read_cifar_batch(folder / name) for name in TRAIN_BATCHES]
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = read_cifar_batch(folder / TEST_BATCH)
    return Splits(
        Dataset(train_images, train_labels, names, "cifar10/train"),
        Dataset(test_images, test_labels, list(names), "cifar10/test"),
    )
