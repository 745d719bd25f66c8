"""MNIST-format data (MNIST, Fashion-MNIST, mnist-small) read from the original IDX files.

IDX (LeCun et al., yann.lecun.com/exdb/mnist/): a header of big-endian int32s, the magic number
(2051 for images, 2049 for labels), then one count per dimension, then uint8 data row-major.
Files may be gzip-compressed (``*.gz``, as published) or already decompressed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import Dataset, DatasetError, Splits, resolve_data_dir

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# (images, labels) file stems of each split, without ".gz".
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

MNIST_KINDS = ("mnist", "fashion-mnist", "mnist-small")

TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "mnist-small": "mnist-small"}

# Sub-folders of a data directory searched for each kind (first match wins).
SUBDIRS = {
    "mnist": ("mnist", "MNIST/raw", "MNIST"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
    "mnist-small": ("mnist-small", "mnist_small"),
}

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip

# Published original files: name -> (size in bytes, MD5). mnist-small is derived: no entry.
PUBLISHED_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": (28881, "d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte.gz": (1648877, "9fb629c4189551a2d022fa330f9573f3"),
        "t10k-labels-idx1-ubyte.gz": (4542, "ec29112dd5afa0611ce80d1b7f02629c"),
        "train-images-idx3-ubyte": (47040016, "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte": (60008, "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte": (7840016, "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte": (10008, "27ae3e4e09519cfbb04c329615203637"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (26421880, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels-idx1-ubyte.gz": (29515, "25c81989df183df01b3e8a0aad5dffbe"),
        "t10k-images-idx3-ubyte.gz": (4422102, "bef4ecab320f06d8554ea6380940ec79"),
        "t10k-labels-idx1-ubyte.gz": (5148, "bb300cfdad3c16e7a12a480ee83cd310"),
        "train-images-idx3-ubyte": (47040016, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train-labels-idx1-ubyte": (60008, "9018921c3c673c538a1fc5bad174d6f9"),
        "t10k-images-idx3-ubyte": (7840016, "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels-idx1-ubyte": (10008, "15d484375f8d13e6eb1aabb0c3f46965"),
    },
}


def check_published_md5(path: Path, raw: bytes, kind: str) -> None:
    """Raise DatasetError if ``raw`` has the size of a published original but another MD5.

    Only files whose name and size match a published MNIST / Fashion-MNIST original are hashed,
    so derived data with the same names (mnist-small) passes untouched.
    """
    same_size = {
        owner: table[path.name][1]
        for owner, table in PUBLISHED_MD5.items()
        if path.name in table and table[path.name][0] == len(raw)
    }
    if not same_size:
        return
    digest = hashlib.md5(raw).hexdigest()
    owner = next((k for k, md5 in same_size.items() if md5 == digest), None)
    if owner == kind:
        return
    if owner is not None:
        if kind in PUBLISHED_MD5:
            raise DatasetError(
                f"{path}: this is the published {TITLES[owner]} file, not {TITLES[kind]}; "
                f"load it as {owner!r}"
            )
        return  # e.g. kind "mnist-small" pointed at the full originals: any content is fine
    if kind in same_size:
        raise DatasetError(
            f"{path}: MD5 {digest} does not match the published {TITLES[kind]} file of the same "
            f"size ({len(raw)} bytes, MD5 {same_size[kind]}); the file is damaged or not "
            f"{TITLES[kind]} (verify=False skips this check)"
        )


def md5sum(path: str | os.PathLike) -> str:
    """The hex MD5 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5sums(directory: str | os.PathLike, listing: str = "MD5SUMS") -> list[Path]:
    """Check every file named in ``directory/listing`` (``md5sum`` format); return those checked."""
    directory = Path(directory)
    listing_path = directory / listing
    try:
        lines = listing_path.read_text().splitlines()
    except OSError as e:
        raise DatasetError(f"{listing_path}: cannot read the MD5 listing ({e.strerror})") from e
    checked = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 32:
            raise DatasetError(
                f"{listing_path}:{number}: expected '<32 hex digits>  <file>', got {line!r}"
            )
        expected, name = parts[0].lower(), parts[1].lstrip("*").strip()
        path = directory / name
        if not path.is_file():
            raise DatasetError(f"{path}: listed in {listing_path} but missing")
        got = md5sum(path)
        if got != expected:
            raise DatasetError(f"{path}: MD5 {got}, expected {expected} (from {listing_path})")
        checked.append(path)
    return checked


def _decompress(path: Path, raw: bytes) -> bytes:
    """The IDX bytes of a file: gunzipped when it starts with the gzip magic, else as is."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: corrupt or truncated gzip data ({e})") from e


def parse_idx(data: bytes, magic: int, path: Path | str = "<bytes>") -> np.ndarray:
    """A uint8 array from IDX bytes, checking the magic number and the size the header declares."""
    what = {IMAGES_MAGIC: "image", LABELS_MAGIC: "label"}.get(magic, "IDX")
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise DatasetError(
            f"{path}: truncated header, {len(data)} bytes, expected at least {header} for an "
            f"IDX {what} file"
        )
    (found,) = struct.unpack(">i", data[:4])
    if found != magic:
        raise DatasetError(
            f"{path}: bad magic number {found} (0x{found & 0xFFFFFFFF:08x}), expected {magic} "
            f"(0x{magic:08x}) for an IDX {what} file"
        )
    dims = struct.unpack(f">{ndim}i", data[4:header])
    if min(dims) < 0:
        raise DatasetError(f"{path}: negative dimension in header {dims}")
    expected = header + int(np.prod(dims))
    shape = " x ".join(map(str, dims))
    if len(data) < expected:
        raise DatasetError(
            f"{path}: truncated, header declares {shape} bytes of data ({expected} bytes in all), "
            f"file has {len(data)}"
        )
    if len(data) > expected:
        raise DatasetError(
            f"{path}: {len(data) - expected} unexpected trailing bytes after the {shape} data "
            f"the header declares (expected {expected} bytes in all)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike, magic: int, kind: str | None = None) -> np.ndarray:
    """Read one IDX file (gzip or raw); with ``kind`` also check the published MD5 where known."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror})") from e
    if kind is not None:
        check_published_md5(path, raw, kind)
    return parse_idx(_decompress(path, raw), magic, path)


def _find_file(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DatasetError(f"{folder}: missing {stem}.gz (or {stem}), one of the 4 IDX files expected")


def find_mnist_dir(data_dir: str | os.PathLike | None, kind: str = "mnist") -> Path:
    """The folder holding ``kind``'s IDX files: ``data_dir`` itself or its sub-folder ``kind``."""
    root = resolve_data_dir(data_dir)
    stems = [stem for pair in IDX_FILES.values() for stem in pair]

    def has_idx(folder: Path) -> bool:
        return any((folder / s).is_file() or (folder / (s + ".gz")).is_file() for s in stems)

    if has_idx(root):
        return root
    for sub in SUBDIRS.get(kind, (kind,)):
        if has_idx(root / sub):
            return root / sub
    raise DatasetError(
        f"{root}: no {TITLES.get(kind, kind)} IDX files ({stems[0]}.gz, ...) in it or in "
        f"{root / SUBDIRS.get(kind, (kind,))[0]}"
    )


def _load_split(folder: Path, split: str, kind: str | None) -> tuple[np.ndarray, np.ndarray, Path]:
    image_path = _find_file(folder, IDX_FILES[split][0])
    label_path = _find_file(folder, IDX_FILES[split][1])
    images = read_idx(image_path, IMAGES_MAGIC, kind)
    labels = read_idx(label_path, LABELS_MAGIC, kind)
    if len(images) != len(labels):
        raise DatasetError(
            f"{label_path}: {len(labels)} labels but {image_path.name} has {len(images)} images; "
            "expected one label per image"
        )
    if len(labels) and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DatasetError(f"{label_path}: label {labels[bad]} at index {bad}, expected 0..9")
    return images, labels.astype(np.int64), image_path


def load_mnist(
    data_dir: str | os.PathLike | None = None, kind: str = "mnist", verify: bool = True
) -> Splits:
    """MNIST, Fashion-MNIST or mnist-small as uint8 (N, 28, 28, 1) images and int64 labels.

    ``data_dir`` is the folder with the four IDX files or a parent holding ``kind``/ (default:
    $CNNKIT_DATA). ``verify`` checks the MD5 of files that have a published original's size.
    """
    if kind not in MNIST_KINDS:
        raise ValueError(f"load_mnist kind must be one of {MNIST_KINDS}, got {kind!r}")
    folder = find_mnist_dir(data_dir, kind)
    check = kind if verify else None
    train_images, train_labels, train_path = _load_split(folder, "train", check)
    test_images, test_labels, test_path = _load_split(folder, "test", check)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DatasetError(
            f"{test_path}: images are {test_images.shape[1]}x{test_images.shape[2]}, expected "
            f"{train_images.shape[1]}x{train_images.shape[2]} like {train_path.name}"
        )
    names = FASHION_CLASSES if kind == "fashion-mnist" else [str(d) for d in range(10)]
    return Splits(
        Dataset(train_images[..., None], train_labels, list(names), f"{kind}/train"),
        Dataset(test_images[..., None], test_labels, list(names), f"{kind}/test"),
    )
