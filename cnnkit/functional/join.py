"""Joining and splitting arrays (torch.cat, torch.split, broadcasting addition) with backwards.

These are the operations that make a network a graph rather than a chain: DenseNet's
concatenations (Huang et al., 2017), ShuffleNet v2's channel split (Ma et al., 2018),
Inception's parallel branches (Szegedy et al., 2015) and residual sums. Their gradients only
route values: concatenation splits the output gradient, splitting concatenates the piece
gradients, and a broadcast sum gives each operand the output gradient summed over the axes it
was broadcast along.
"""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional._args import check_float, check_same_dtype


def _arrays(xs, op: str) -> list[np.ndarray]:
    xs = list(xs)
    if not xs:
        raise ValueError(f"{op} expected at least one array, got none")
    for i, x in enumerate(xs):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{op} expected numpy.ndarray inputs, got {type(x).__name__} at {i}")
        check_float(x, op, f"input {i}")
    check_same_dtype(op, **{f"input {i}": x for i, x in enumerate(xs)})
    return xs


def _axis(dim, ndim: int, op: str) -> int:
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{op} dim must be an int, got {dim!r}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op} dim must be in [{-ndim}, {ndim - 1}] for {ndim}-D input, got {dim}")
    return int(dim) % ndim


def concat(xs, dim: int = 1) -> tuple[np.ndarray, tuple]:
    """y = [x_1, x_2, ...] joined along ``dim`` (torch.cat); the cache is each input's length."""
    xs = _arrays(xs, "concat")
    axis = _axis(dim, xs[0].ndim, "concat")
    for i, x in enumerate(xs):
        others = x.shape[:axis] + x.shape[axis + 1 :]
        if x.ndim != xs[0].ndim or others != xs[0].shape[:axis] + xs[0].shape[axis + 1 :]:
            raise ValueError(
                f"concat expected every input to match input 0 {xs[0].shape} outside dim "
                f"{axis}, got {x.shape} at {i}"
            )
    return np.concatenate(xs, axis=axis), (axis, tuple(x.shape[axis] for x in xs))


def concat_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, ...]:
    """dL/dx_i = the slice of dL/dy that x_i filled."""
    axis, lengths = cache
    return tuple(np.split(dout, np.cumsum(lengths)[:-1], axis=axis))


def check_split(split_size_or_sections, op: str = "split") -> None:
    """Raise unless the argument is an int >= 1 or a sequence of ints >= 0 (torch.split's)."""
    value = split_size_or_sections
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{op} split_size must be >= 1, got {value}")
        return
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise TypeError(
            f"{op} split_size_or_sections must be an int or a list of non-negative ints, "
            f"got {value!r}"
        )


def split_sizes(length: int, split_size_or_sections, op: str = "split") -> tuple[int, ...]:
    """Piece lengths as torch.split gives them: chunks of an int size (the last one shorter)
    or the listed sections, which must add up to ``length``."""
    value = split_size_or_sections
    check_split(value, op)
    if isinstance(value, numbers.Integral):
        return tuple(min(value, length - start) for start in range(0, length, value)) or (0,)
    if sum(value) != length:
        raise ValueError(
            f"{op} sections {list(value)} add up to {sum(value)}, but the axis has length {length}"
        )
    return tuple(int(v) for v in value)


def split(x: np.ndarray, split_size_or_sections, dim: int = 1) -> tuple[tuple, tuple]:
    """The pieces of ``x`` along ``dim`` (torch.split): views, in order."""
    (x,) = _arrays([x], "split")
    axis = _axis(dim, x.ndim, "split")
    lengths = split_sizes(x.shape[axis], split_size_or_sections)
    pieces = tuple(np.split(x, np.cumsum(lengths)[:-1], axis=axis))
    return pieces, (x.shape, x.dtype, axis, lengths)


def split_backward(douts, cache: tuple) -> np.ndarray:
    """dL/dx = the piece gradients joined along the split axis (None: a piece with none)."""
    shape, dtype, axis, lengths = cache
    douts = tuple(douts)
    if len(douts) != len(lengths):
        raise ValueError(
            f"split backward expected {len(lengths)} gradients (one per piece), got {len(douts)}"
        )
    parts = []
    for dout, length in zip(douts, lengths, strict=True):
        piece = (*shape[:axis], length, *shape[axis + 1 :])
        if dout is None:
            dout = np.zeros(piece, dtype=dtype)
        elif np.shape(dout) != piece:
            raise ValueError(
                f"split backward expected a gradient of shape {piece}, got {np.shape(dout)}"
            )
        parts.append(dout)
    return np.concatenate(parts, axis=axis)


def add(xs) -> tuple[np.ndarray, tuple]:
    """y = x_1 + x_2 + ... with NumPy broadcasting; the cache is each input's shape."""
    xs = _arrays(xs, "add")
    try:
        shape = np.broadcast_shapes(*(x.shape for x in xs))
    except ValueError:
        raise ValueError(
            f"add expected shapes that broadcast together, got {[x.shape for x in xs]}"
        ) from None
    out = np.zeros(shape, dtype=xs[0].dtype)
    for x in xs:
        out += x
    return out, tuple(x.shape for x in xs)


def unbroadcast(dout: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """dL/dx for an x of ``shape`` broadcast to the shape of dout: dout summed over those axes."""
    extra = dout.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and dout.shape[extra + i] != 1
    )
    return dout.sum(axis=axes).reshape(shape) if axes else dout


def add_backward(dout: np.ndarray, shapes: tuple) -> tuple[np.ndarray, ...]:
    """dL/dx_i = dL/dy summed over the axes that x_i was broadcast along."""
    return tuple(unbroadcast(dout, shape) for shape in shapes)
