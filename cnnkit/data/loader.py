"""Mini-batches with reproducible, resumable shuffling and augmentation; train/validation splits.

Randomness is counter-based: from one integer ``seed`` the loader derives the permutation of epoch
e from ``SeedSequence(seed, spawn_key=(0, e))`` and the Generator handed to the transform for batch
b of epoch e from ``SeedSequence(seed, spawn_key=(1, e, b))``. The whole random state is therefore
``{"seed", "epoch", "batch"}``: three ints that a checkpoint saves as JSON, and from which a new
loader continues bit-identically, even from the middle of an epoch.

For data-parallel training, ``shard=(rank, size)`` makes the loader serve only rank's contiguous
slice of every global batch. The batch is built and transformed whole, then sliced, so the
union of the ranks' slices is exactly the batch one process would see, augmentation included,
and the state stays the same three ints whatever the number of ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def to_float_nchw(images: np.ndarray) -> np.ndarray:
    """A float32 (N, C, H, W) batch: uint8 (N, H, W[, C]) scaled by 1/255, floats kept NCHW."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(f"uint8 images must be (N, H, W) or (N, H, W, C), got {images.shape}")
        return images.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255)
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be uint8 or float, got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"float images must be (N, C, H, W) or (N, H, W), got {images.shape}")
    return images.astype(np.float32)  # always a copy: transforms may work on it freely


def shard_bounds(count: int, rank: int, size: int) -> tuple[int, int]:
    """Rows [start, stop) of a batch of ``count`` that rank ``rank`` of ``size`` takes.

    The shards are contiguous and differ in length by at most one (as numpy.array_split's), so
    their union in rank order is the whole batch.
    """
    return count * rank // size, count * (rank + 1) // size


def _check_fraction(value: float, name: str) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def train_val_split(
    n: int, val_fraction: float = 0.1, seed: int = 0, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train_indices, val_indices) of ``range(n)``, both sorted.

    With ``labels`` the split is stratified: each class gives the same fraction (largest-remainder
    rounding, so the validation set has exactly round(n * val_fraction) samples).
    """
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    n = int(n)
    n_val = int(round(n * val_fraction))
    rng = np.random.default_rng(seed)
    if labels is None:
        val = rng.permutation(n)[:n_val]
    else:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
        classes, inverse = np.unique(labels, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(classes))
        exact = counts * val_fraction
        per_class = np.floor(exact).astype(int)
        leftover = n_val - per_class.sum()
        per_class[np.argsort(-(exact - per_class), kind="stable")[:leftover]] += 1
        val = np.concatenate(
            [rng.permutation(np.flatnonzero(inverse == c))[:k] for c, k in enumerate(per_class)]
        )
    mask = np.zeros(n, dtype=bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


class DataLoader:
    """Mini-batches (x float32 (B, C, H, W), y int64 (B,)), like torch.utils.data.DataLoader.

    ``images`` may stay uint8 (N, H, W[, C]): each batch is converted (and scaled to [0, 1]) on
    its own, so the float32 copy of the whole set never exists. ``indices`` restricts the loader to
    a subset (e.g. from train_val_split) without copying. ``transform(x, rng)`` runs on each float
    batch with a Generator of its own. Give ``seed`` (an int) or ``rng`` (a Generator, from which
    one seed is drawn); with neither, a fresh random seed is chosen and reported by get_state().
    ``shard=(rank, size)`` serves rank's slice of each batch (see the module docstring).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        transform: Transform | None = None,
        indices: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
        shard: tuple[int, int] | None = None,
    ):
        self.images = images
        self.labels = np.asarray(labels).astype(np.int64, copy=False)
        if len(self.labels) != len(images):
            raise ValueError(
                f"DataLoader got {len(images)} images but {len(self.labels)} labels; "
                "expected one label per image"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise ValueError(f"DataLoader batch_size must be a positive int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"DataLoader batch_size must be a positive int, got {batch_size!r}")
        if seed is not None and rng is not None:
            raise ValueError("DataLoader takes seed or rng, not both")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.indices = (
            np.arange(len(self.labels)) if indices is None else np.asarray(indices, dtype=np.int64)
        )
        if rng is not None:
            seed = int(rng.integers(2**63))
        elif seed is None:
            seed = int(np.random.default_rng().integers(2**63))  # fits an int64 checkpoint field
        self.seed = int(seed)
        self.epoch = 0  # index of the epoch being (or next to be) iterated
        self.batch = 0  # batches of that epoch already yielded
        if len(self) == 0:
            raise ValueError(
                f"DataLoader has no batches: {len(self.indices)} samples, batch_size "
                f"{self.batch_size}, drop_last={self.drop_last}"
            )
        self.shard = None
        if shard is not None:
            self.shard = self._check_shard(shard)

    def _check_shard(self, shard) -> tuple[int, int]:
        try:
            rank, size = (int(v) for v in shard)
        except (TypeError, ValueError):
            raise ValueError(f"DataLoader shard must be (rank, size), got {shard!r}") from None
        if size < 1 or not 0 <= rank < size:
            raise ValueError(f"DataLoader shard must have 0 <= rank < size, got {shard!r}")
        largest = min(self.batch_size, self.num_samples)
        if largest < size:
            raise ValueError(
                f"DataLoader with {size} shards has batches of only {largest} samples, so some "
                f"rank would get none; use a batch size >= {size}"
            )
        last = 0 if self.drop_last else self.num_samples % self.batch_size
        if 0 < last < size:
            raise ValueError(
                f"DataLoader with {size} shards has a last batch of only {last} samples, so some "
                "rank would get none; pass drop_last=True"
            )
        return rank, size

    @property
    def num_samples(self) -> int:
        """Number of samples one epoch visits (before drop_last)."""
        return len(self.indices)

    def __len__(self) -> int:
        full, rest = divmod(len(self.indices), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _generator(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The sample indices of ``epoch`` in the order they are served."""
        if not self.shuffle:
            return self.indices
        return self.indices[self._generator(0, epoch).permutation(len(self.indices))]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.batch >= len(self):  # state saved after the last batch of an epoch
            self.epoch, self.batch = self.epoch + 1, 0
        order = self.epoch_order(self.epoch)
        while self.batch < len(self):
            b = self.batch
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = to_float_nchw(self.images[idx])
            if self.transform is not None:
                x = self.transform(x, self._generator(1, self.epoch, b))
            y = self.labels[idx]
            if self.shard is not None:
                start, stop = shard_bounds(len(idx), *self.shard)
                x, y = x[start:stop], y[start:stop]
            self.batch = b + 1  # counted as consumed once yielded
            yield x, y
        self.epoch, self.batch = self.epoch + 1, 0

    def get_state(self) -> dict[str, int]:
        """The random state {"seed", "epoch", "batch"}: JSON-safe ints for a checkpoint."""
        return {"seed": self.seed, "epoch": self.epoch, "batch": self.batch}

    def set_state(self, state: dict[str, int]) -> None:
        """Restore get_state(): the next iteration continues exactly where that one stopped."""
        missing = {"seed", "epoch", "batch"} - set(state)
        if missing:
            raise ValueError(f"DataLoader state lacks {sorted(missing)}, got keys {sorted(state)}")
        self.seed, self.epoch, self.batch = (int(state[k]) for k in ("seed", "epoch", "batch"))

    def __repr__(self) -> str:
        return (
            f"DataLoader(n={len(self.indices)}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, transform={self.transform!r}"
            + ("" if self.shard is None else f", shard={self.shard}")
            + ")"
        )
