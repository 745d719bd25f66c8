"""Data sets (read from local files, never downloaded), mini-batch loaders and augmentation."""

from cnnkit.data.cifar import load_cifar10, read_cifar_batch
from cnnkit.data.dataset import DATA_ENV_VAR, Dataset, DatasetError, Splits, resolve_data_dir
from cnnkit.data.datasets import (
    describe_datasets,
    list_datasets,
    load_dataset,
    load_digits,
    load_folder_splits,
)
from cnnkit.data.folder import load_image_folder
from cnnkit.data.loader import DataLoader, to_float_nchw, train_val_split
from cnnkit.data.mnist import (
    check_published_md5,
    load_mnist,
    md5sum,
    parse_idx,
    read_idx,
    verify_md5sums,
)
from cnnkit.data.transforms import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShift,
    compute_mean_std,
)

__all__ = [
    "DATA_ENV_VAR",
    "Compose",
    "DataLoader",
    "Dataset",
    "DatasetError",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomShift",
    "Splits",
    "check_published_md5",
    "compute_mean_std",
    "describe_datasets",
    "list_datasets",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_folder_splits",
    "load_image_folder",
    "load_mnist",
    "md5sum",
    "parse_idx",
    "read_cifar_batch",
    "read_idx",
    "resolve_data_dir",
    "to_float_nchw",
    "train_val_split",
    "verify_md5sums",
]
