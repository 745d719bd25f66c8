"""Tests for cnnkit.data: loaders on small files written here, DataLoader, transforms."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import (
    Compose,
    DataLoader,
    Dataset,
    DatasetError,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShift,
    compute_mean_std,
    describe_datasets,
    list_datasets,
    load_cifar10,
    load_dataset,
    load_digits,
    load_image_folder,
    load_mnist,
    md5sum,
    resolve_data_dir,
    to_float_nchw,
    train_val_split,
    verify_md5sums,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# ---------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 + array.ndim if magic is None else magic
    return struct.pack(f">{1 + array.ndim}i", magic, *array.shape) + array.tobytes()


def write_file(path: Path, data: bytes, gz: bool) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(folder: Path, n_train=5, n_test=3, size=(4, 6), gz=True, seed=0):
    """Four small IDX files; returns {split: (images, labels)}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, *size), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_file(folder / STEMS[split][0], idx_bytes(images), gz)
        write_file(folder / STEMS[split][1], idx_bytes(labels), gz)
        written[split] = (images, labels)
    return written


def write_cifar(folder: Path, n_per_batch=4, seed=0):
    """A cifar-10-batches-py folder in the real format; returns {batch name: (data, labels)}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]
    out = {}
    for name in [*names, "test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        batch = {
            b"batch_label": f"{name} of 5".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        out[name] = (data, labels)
    meta = {
        b"label_names": [
            n.encode()
            for n in "airplane automobile bird cat deer dog frog horse ship truck".split()
        ],
        b"num_cases_per_batch": n_per_batch,
        b"num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return out


# ---------------------------------------------------------------- IDX / MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_round_trip(tmp_path, gz):
    written = write_mnist(tmp_path, gz=gz)
    train, test = load_mnist(tmp_path, kind="mnist")
    for ds, split in ((train, "train"), (test, "test")):
        images, labels = written[split]
        assert ds.images.dtype == np.uint8 and ds.images.shape == (*images.shape, 1)
        np.testing.assert_array_equal(ds.images[..., 0], images)
        assert ds.labels.dtype == np.int64
        np.testing.assert_array_equal(ds.labels, labels)
        assert ds.image_shape == (1, 4, 6)
        assert ds.class_names == [str(d) for d in range(10)]
    assert train.name == "mnist/train"


def test_load_mnist_from_parent_folder_and_env(tmp_path, monkeypatch):
    written = write_mnist(tmp_path / "fashion-mnist")
    write_mnist(tmp_path / "mnist-small", n_train=7, seed=1)
    train, _ = load_mnist(tmp_path, kind="fashion-mnist")
    np.testing.assert_array_equal(train.images[..., 0], written["train"][0])
    assert train.class_names[0] == "T-shirt/top" and train.class_names[9] == "Ankle boot"
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path))
    assert len(load_dataset("mnist-small").train) == 7
    assert len(load_dataset("fashion_mnist").train) == 5  # alias spelling
    with pytest.raises(DatasetError, match=r"no MNIST IDX files .*train-images-idx3-ubyte"):
        load_mnist(tmp_path, kind="mnist")


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNKIT_DATA", raising=False)
    with pytest.raises(DatasetError, match="CNNKIT_DATA"):
        resolve_data_dir()
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_data_dir(tmp_path / "nowhere")
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir(str(tmp_path)) == tmp_path


def test_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"missing t10k-labels-idx1-ubyte\.gz"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_bad_magic(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    images = np.zeros((5, 4, 6), np.uint8)
    write_file(tmp_path / "train-images-idx3-ubyte", idx_bytes(images, magic=2049), gz)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.*bad magic number 2049.*2051"):
        load_mnist(tmp_path)


def test_labels_bad_magic(tmp_path):
    write_mnist(tmp_path)
    write_file(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(3), magic=2051), True)
    with pytest.raises(DatasetError, match=r"t10k-labels.*bad magic number 2051.*expected 2049"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_file(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    full = idx_bytes(np.zeros((5, 4, 6), np.uint8))
    write_file(tmp_path / "train-images-idx3-ubyte", full[:-7], gz)
    with pytest.raises(DatasetError, match=r"truncated, header declares 5 x 4 x 6"):
        load_mnist(tmp_path)


def test_truncated_header_and_trailing_bytes(tmp_path):
    write_mnist(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DatasetError, match="truncated header"):
        load_mnist(tmp_path)
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(5)) + b"xx", False)
    with pytest.raises(DatasetError, match="2 unexpected trailing bytes"):
        load_mnist(tmp_path)


def test_truncated_gzip_stream(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(
        DatasetError, match=r"train-images-idx3-ubyte\.gz: corrupt or truncated gzip"
    ):
        load_mnist(tmp_path)


def test_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(4)), True)
    with pytest.raises(DatasetError, match=r"4 labels but train-images-idx3-ubyte.gz has 5 images"):
        load_mnist(tmp_path)


def test_label_out_of_range(tmp_path):
    write_mnist(tmp_path)
    write_file(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes([1, 12, 3]), True)
    with pytest.raises(DatasetError, match=r"label 12 at index 1, expected 0\.\.9"):
        load_mnist(tmp_path)


def test_md5_checked_only_for_published_sizes(tmp_path):
    # A raw t10k labels file of the published size (10,008 bytes) but other content.
    rng = np.random.default_rng(0)
    write_mnist(tmp_path, size=(1, 1), gz=False)
    write_file(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((10000, 1, 1))), False)
    labels = idx_bytes(rng.integers(0, 10, 10000))
    assert len(labels) == 10008
    write_file(tmp_path / "t10k-labels-idx1-ubyte", labels, False)
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: MD5 .* published MNIST"):
        load_mnist(tmp_path, kind="mnist")
    assert len(load_mnist(tmp_path, kind="mnist", verify=False).test) == 10000
    assert len(load_mnist(tmp_path, kind="mnist-small").test) == 10000  # derived data: no MD5


def test_verify_md5sums(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"hello")
    (tmp_path / "MD5SUMS").write_text(f"{md5sum(tmp_path / 'a.bin')}  a.bin\n")
    assert verify_md5sums(tmp_path) == [tmp_path / "a.bin"]
    (tmp_path / "a.bin").write_bytes(b"hellO")
    with pytest.raises(DatasetError, match=r"a\.bin: MD5 [0-9a-f]{32}, expected"):
        verify_md5sums(tmp_path)


def test_real_mnist_small(real_data_dir):
    root = real_data_dir("mnist-small")
    train, test = load_dataset("mnist-small", root)
    assert train.images.shape == (8000, 28, 28, 1) and test.images.shape == (2000, 28, 28, 1)
    assert set(np.unique(train.labels)) == set(range(10)) == set(np.unique(test.labels))
    assert 700 <= np.bincount(train.labels).min() and np.bincount(test.labels).min() >= 170
    x, y = next(iter(DataLoader(train.images, train.labels, batch_size=16)))
    assert x.shape == (16, 1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() < x.max() <= 1


@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist"])
def test_real_published_files_pass_md5(kind, real_data_dir):
    root = real_data_dir(kind)
    train, test = load_mnist(root, kind=kind)
    assert len(train) == 60000 and len(test) == 10000
    other = "fashion-mnist" if kind == "mnist" else "mnist"
    with pytest.raises(DatasetError, match=f"this is the published .* file.*load it as '{kind}'"):
        load_mnist(root / kind, kind=other)


# ---------------------------------------------------------------- CIFAR-10


def test_cifar10_pixel_layout(tmp_path):
    written = write_cifar(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        train, test = load_cifar10(root)
        assert train.images.shape == (20, 32, 32, 3) and train.images.dtype == np.uint8
        assert test.images.shape == (4, 32, 32, 3)
        assert train.class_names[0] == "airplane" and train.class_names[9] == "truck"
    data, labels = written["data_batch_2"]
    got = train.images[4:8]  # batch 2 follows batch 1's four images
    np.testing.assert_array_equal(train.labels[4:8], labels)
    # Red plane first, each plane row-major: data[i, c*1024 + y*32 + x] == image[i, y, x, c].
    i, c, y, x = 1, 2, 5, 17
    assert got[i, y, x, c] == data[i, c * 1024 + y * 32 + x]
    nchw = to_float_nchw(got)
    np.testing.assert_allclose(nchw * 255, data.reshape(4, 3, 32, 32), atol=1e-4)
    np.testing.assert_array_equal(
        test.images.transpose(0, 3, 1, 2).reshape(4, -1), written["test_batch"][0]
    )


def test_cifar10_errors(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_3: missing"):
        load_cifar10(tmp_path)
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"data_batch_3: data is uint8 \(2, 100\), expected"):
        load_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": 1}, protocol=2)[:10])
    with pytest.raises(DatasetError, match=r"data_batch_3: not a readable CIFAR-10 pickle"):
        load_cifar10(tmp_path)
    with pytest.raises(DatasetError, match="no CIFAR-10 python batches"):
        load_cifar10(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_cifar10_pickle_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil()}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"test_batch: .*refusing to load (posix|nt)\.system"):
        load_cifar10(tmp_path)


# ---------------------------------------------------------------- image folders


def write_folder(root: Path, sizes=((5, 4),) * 3, classes=("dog", "cat")) -> dict:
    from PIL import Image

    rng = np.random.default_rng(0)
    written = {}
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
            written[(cls, i)] = pixels
        (root / cls / "notes.txt").write_text("not an image, ignored")
    return written


def test_image_folder(tmp_path):
    written = write_folder(tmp_path)
    ds = load_image_folder(tmp_path)
    assert ds.class_names == ["cat", "dog"]  # sorted
    assert ds.images.shape == (6, 4, 5, 3) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(ds.images[4], written[("dog", 1)])
    gray = load_image_folder(tmp_path, grayscale=True)
    assert gray.images.shape == (6, 4, 5, 1) and gray.image_shape == (1, 4, 5)
    resized = load_image_folder(tmp_path, image_size=(8, 7))
    assert resized.images.shape == (6, 8, 7, 3)


def test_image_folder_errors(tmp_path):
    write_folder(tmp_path / "mixed", sizes=((5, 4), (6, 4)))
    with pytest.raises(DatasetError, match=r"1\.png: image is 6x4 .*pass image_size"):
        load_image_folder(tmp_path / "mixed")
    assert load_image_folder(tmp_path / "mixed", image_size=4).images.shape == (4, 4, 4, 3)
    write_folder(tmp_path / "broken")
    (tmp_path / "broken" / "cat" / "zz.png").write_bytes(b"this is not a png")
    with pytest.raises(DatasetError, match=r"cat/zz\.png: unreadable image"):
        load_image_folder(tmp_path / "broken")
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_image_folder(_empty(tmp_path))
    with pytest.raises(DatasetError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")


def test_folder_dataset_splits(tmp_path):
    write_folder(tmp_path / "flat", sizes=((4, 4),) * 5)
    train, test = load_dataset(f"folder:{tmp_path / 'flat'}")
    assert len(train) == 8 and len(test) == 2 and sorted(test.labels) == [0, 1]
    write_folder(tmp_path / "split" / "train")
    write_folder(tmp_path / "split" / "test", sizes=((5, 4),))
    train, test = load_dataset(f"folder:{tmp_path / 'split'}")
    assert (len(train), len(test)) == (6, 2)


# ---------------------------------------------------------------- digits and the registry


def test_digits_shapes_and_split_determinism():
    train, test = load_digits()
    assert len(train) + len(test) == 1797 and len(test) == round(1797 * 0.2)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == np.float32
    assert 0.0 <= train.images.min() and train.images.max() == 1.0
    assert train.labels.dtype == np.int64 and set(np.unique(test.labels)) == set(range(10))
    again = load_digits()
    np.testing.assert_array_equal(train.labels, again.train.labels)
    np.testing.assert_array_equal(test.images, again.test.images)
    other = load_digits(seed=1)
    assert not np.array_equal(test.images, other.test.images)


def test_registry():
    assert {"digits", "mnist", "fashion-mnist", "mnist-small", "cifar10"} <= set(list_datasets())
    assert "folder:PATH" in describe_datasets()
    assert len(load_dataset("digits").test) == 359
    with pytest.raises(DatasetError, match=r"unknown data set 'imagenet'; expected one of digits"):
        load_dataset("imagenet")


def test_dataset_validation():
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        Dataset(np.zeros((3, 2, 2), np.uint8), np.zeros(2))
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        Dataset(np.zeros((2, 2, 2), np.uint8), np.array([0, 5]), ["a", "b"])
    ds = Dataset(np.zeros((4, 2, 3), np.uint8), np.array([0, 1, 2, 1]))
    assert ds.images.shape == (4, 2, 3, 1) and ds.num_classes == 3
    assert len(ds.subset([1, 3])) == 2 and "n=4" in repr(ds)


# ---------------------------------------------------------------- DataLoader


def make_data(n=10, shape=(1, 4, 4)):
    images = np.arange(n * int(np.prod(shape)), dtype=np.float32).reshape(n, *shape)
    return images, np.arange(n) % 3


def epoch_labels(loader) -> list[np.ndarray]:
    return [y for _, y in loader]


def test_loader_batching():
    images, labels = make_data(10)
    loader = DataLoader(images, labels, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 == len(batches)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.dtype == np.float32 and x.shape == (4, 1, 4, 4) and y.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), images)
    dropped = DataLoader(images, labels, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(y) for y in epoch_labels(dropped)] == [4, 4]
    with pytest.raises(ValueError, match="no batches"):
        DataLoader(images, labels, batch_size=11, drop_last=True)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        DataLoader(images, labels[:9])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        DataLoader(images, labels, batch_size=0)


def test_loader_uint8_nhwc_converted_per_batch():
    images = np.random.default_rng(0).integers(0, 256, size=(6, 3, 5, 2), dtype=np.uint8)
    x, _ = next(iter(DataLoader(images, np.zeros(6), batch_size=6)))
    assert x.shape == (6, 2, 3, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x, images.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)


def test_loader_shuffle_determinism():
    images, labels = make_data(50)
    labels = np.arange(50)

    def orders(**kw):
        loader = DataLoader(images, labels, batch_size=8, shuffle=True, **kw)
        return [np.concatenate(epoch_labels(loader)) for _ in range(3)]

    a, b = orders(seed=3), orders(seed=3)
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(ea, eb)
        assert sorted(ea) == list(range(50))  # a permutation
    assert not np.array_equal(a[0], a[1])  # a new order each epoch
    assert not np.array_equal(a[0], orders(seed=4)[0])
    g1, g2 = orders(rng=np.random.default_rng(7)), orders(rng=np.random.default_rng(7))
    np.testing.assert_array_equal(g1[2], g2[2])
    unshuffled = DataLoader(images, labels, batch_size=8, shuffle=False)
    np.testing.assert_array_equal(np.concatenate(epoch_labels(unshuffled)), labels)


def test_loader_state_restore_is_bit_identical():
    images, labels = make_data(20, shape=(2, 6, 6))
    transform = Compose([RandomCrop(6, padding=2), RandomHorizontalFlip()])
    kw = dict(batch_size=6, shuffle=True, transform=transform)
    loader = DataLoader(images, labels, seed=11, **kw)
    list(loader)  # epoch 0
    it = iter(loader)
    next(it), next(it)  # two batches into epoch 1
    state = json.loads(json.dumps(loader.get_state()))
    assert state["epoch"] == 1 and state["batch"] == 2
    rest = list(it) + [b for _ in range(2) for b in loader]  # rest of epoch 1, epochs 2-3
    resumed = DataLoader(images, labels, **kw)  # a different (random) seed until restored
    resumed.set_state(state)
    again = [b for _ in range(3) for b in resumed]
    assert len(again) == len(rest) == 2 + 2 * 4
    for (x1, y1), (x2, y2) in zip(rest, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    with pytest.raises(ValueError, match=r"lacks \['batch'\]"):
        resumed.set_state({"seed": 1, "epoch": 0})


def test_loader_gives_each_batch_its_own_generator():
    images, labels = make_data(12)
    loader = DataLoader(images, labels, batch_size=3, transform=lambda x, rng: x + rng.random())
    offsets = [x[0, 0, 0, 0] - images[3 * i, 0, 0, 0] for i, (x, _) in enumerate(loader)]
    assert len(set(offsets)) == 4


def test_loader_state_after_last_batch_moves_to_next_epoch():
    images, labels = make_data(8)
    a = DataLoader(images, labels, batch_size=4, shuffle=True, seed=0)
    for _ in a:
        state = a.get_state()  # taken inside the loop, after the last batch
    assert state == {"seed": 0, "epoch": 0, "batch": 2}
    b = DataLoader(images, labels, batch_size=4, shuffle=True, seed=5)
    b.set_state(state)
    np.testing.assert_array_equal(np.concatenate(epoch_labels(b)), np.concatenate(epoch_labels(a)))


def test_loader_indices_subset():
    images, labels = make_data(10)
    train_idx, val_idx = train_val_split(10, 0.3, seed=0)
    loader = DataLoader(images, labels, batch_size=4, indices=val_idx)
    x = np.concatenate([x for x, _ in loader])
    np.testing.assert_array_equal(x, images[val_idx])
    assert loader.num_samples == 3


def test_train_val_split():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, val = train_val_split(100, 0.2, seed=0, labels=labels)
    assert len(val) == 20 and len(train) == 80
    assert np.intersect1d(train, val).size == 0 and sorted(np.r_[train, val]) == list(range(100))
    np.testing.assert_array_equal(np.bincount(labels[val]), [2, 4, 6, 8])  # stratified
    train2, val2 = train_val_split(100, 0.2, seed=0, labels=labels)
    np.testing.assert_array_equal(val, val2)
    _, val3 = train_val_split(100, 0.2, seed=1, labels=labels)
    assert not np.array_equal(val, val3)
    _, plain = train_val_split(7, 0.3, seed=0)
    assert len(plain) == 2
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.5"):
        train_val_split(10, 1.5)


# ---------------------------------------------------------------- transforms


def batch(n=5, c=3, h=6, w=7, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)


def test_flip_is_exact_mirror():
    x = batch()
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(x, rng), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(x, rng), x)
    out = RandomHorizontalFlip(0.5)(batch(n=64), rng)
    src = batch(n=64)
    flipped = [np.array_equal(o, s[..., ::-1]) for o, s in zip(out, src)]
    kept = [np.array_equal(o, s) for o, s in zip(out, src)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54


def test_crop_identity_and_windows():
    x = batch()
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(RandomCrop((6, 7), padding=0)(x, rng), x)
    out = RandomCrop((6, 7), padding=2)(x, rng)
    assert out.shape == x.shape and out.dtype == np.float32
    xpad = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for n in range(len(x)):  # each output is one window of its own padded image
        windows = [xpad[n, :, t : t + 6, l : l + 7] for t in range(5) for l in range(5)]
        assert any(np.array_equal(out[n], w) for w in windows)
    assert RandomCrop(4)(x, rng).shape == (5, 3, 4, 4)
    with pytest.raises(ValueError, match="exceeds the padded image"):
        RandomCrop(9)(x, rng)


def test_shift_translates_with_zero_fill():
    x = batch(n=8)
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(RandomShift(0)(x, rng), x)
    out = RandomShift(2)(x, rng)
    assert out.shape == x.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    shifts = []
    for n in range(len(x)):
        # content moves down by dy and right by dx; zeros come in
        shifts += [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(out[n], xpad[n, :, 2 - dy : 8 - dy, 2 - dx : 9 - dx])
        ]
    assert len(shifts) == len(x)  # each image is exactly one shift of itself
    assert len({dy for dy, _ in shifts}) > 1 and len({dx for _, dx in shifts}) > 1


def test_normalize_maths():
    x = batch()
    mean, std = [0.5, -1.0, 2.0], [2.0, 0.5, 1.5]
    out = Normalize(mean, std)(x)
    expected = (x - np.array(mean).reshape(1, 3, 1, 1)) / np.array(std).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_allclose(Normalize(0.5, 2.0)(x), (x - 0.5) / 2.0, rtol=1e-6)
    with pytest.raises(ValueError, match="2 channel statistics, got a batch with 3 channels"):
        Normalize([0, 0], [1, 1])(x)
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize([0], [0])


def test_transforms_deterministic_and_pure():
    x = batch(n=16)
    copy = x.copy()
    t = Compose([RandomShift(1), RandomCrop(6, padding=1), RandomHorizontalFlip(), Normalize(0, 2)])
    a = t(x, np.random.default_rng(42))
    b = t(x, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 3, 6, 6)
    assert not np.array_equal(a, t(x, np.random.default_rng(43)))
    np.testing.assert_array_equal(x, copy)  # input untouched
    with pytest.raises(TypeError, match="RandomCrop needs an explicit np.random.Generator"):
        RandomCrop(6)(x)
    with pytest.raises(ValueError, match=r"expects a float \(N, C, H, W\) batch"):
        RandomHorizontalFlip()(x[0], np.random.default_rng(0))


def test_compute_mean_std():
    images = np.random.default_rng(0).integers(0, 256, size=(10, 5, 4, 3), dtype=np.uint8)
    mean, std = compute_mean_std(images, chunk=3)
    ref = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(std, ref.std(axis=(0, 1, 2)), rtol=1e-5)
    floats = batch(n=9)
    mean, std = compute_mean_std(floats, chunk=4)
    np.testing.assert_allclose(mean, floats.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(std, floats.std(axis=(0, 2, 3)), rtol=1e-4)
