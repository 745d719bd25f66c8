"""2-D padding of the last two axes (torch.nn.functional.pad with a 4-tuple) and its backward.

Each axis is padded on its own. An output position j of an axis of n inputs padded by
(before, after) reads the input at t = j - before, the position relative to the input:

    constant:   x[t] for 0 <= t < n, else ``value``
    reflect:    x[-t] for t < 0, x[2(n - 1) - t] for t >= n    (the edge is not repeated)
    replicate:  x[clip(t, 0, n - 1)]
    circular:   x[lo + (j - max(before, 0)) mod m]  with [lo, lo + m) the input left by the
                negative sides, which crop before the positive ones wrap (torch's order)

A negative side crops in every mode. Each axis's source index splits into a few runs (a border,
the interior, a wrapped copy) that read the input straight (step +1), mirrored (-1) or as one
repeated edge (0), so the forward pass is one block copy per pair of a row run and a column run.
The backward pass is the adjoint of this gather: the gradient of each output position is added
onto the input position it read, so the reflected, replicated and wrapped borders accumulate
onto their source pixels (block slice-adds; a replicated edge adds the sum of its block).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from cnnkit.functional._args import check_float

MODES = ("constant", "reflect", "replicate", "circular")

Padding4 = tuple[int, int, int, int]


def quadruple(padding, owner: str = "pad2d") -> Padding4:
    """``padding`` as (left, right, top, bottom): an int pads all four sides (may be < 0)."""
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        return (int(padding),) * 4
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 4
        and all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in padding)
    ):
        return tuple(int(p) for p in padding)
    raise TypeError(
        f"{owner} padding must be an int or a 4-tuple (left, right, top, bottom) of ints, "
        f"got {padding!r}"
    )


@dataclass(frozen=True)
class _Run:
    """Output positions [start, stop) of one axis reading the inputs from ``source`` by ``step``.

    ``step`` is +1 or -1 (a straight or mirrored copy, every input read once) or 0 (every output
    position reads the input ``source``: a replicated edge, whose gradient is a sum).
    """

    start: int
    stop: int
    source: int
    step: int

    @property
    def outputs(self) -> slice:
        """The run's output positions."""
        return slice(self.start, self.stop)

    @property
    def inputs(self) -> slice:
        """The input positions they read, in the same order (the one edge for step 0)."""
        if self.step == 0:
            return slice(self.source, self.source + 1)
        last = self.source + self.step * (self.stop - self.start - 1)
        end = last + self.step
        return slice(self.source, None if end < 0 else end, self.step)


@dataclass
class PadCache:
    """The input shape and the runs of rows and of columns that the output reads."""

    input_shape: tuple[int, ...]
    padding: Padding4
    rows: list[_Run]
    columns: list[_Run]


def _source_index(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """The input position every output position of one axis reads (-1: the constant value)."""
    t = np.arange(-before, size + after)
    if mode == "constant":
        return np.where((t >= 0) & (t < size), t, -1)
    if mode == "reflect":
        return np.where(t < 0, -t, np.where(t >= size, 2 * (size - 1) - t, t))
    if mode == "replicate":
        return np.clip(t, 0, size - 1)
    low = max(-before, 0)
    kept = size - low - max(-after, 0)
    return low + (t + before - max(before, 0)) % max(kept, 1)


def _runs(index: np.ndarray) -> list[_Run]:
    """Split an axis's source index into runs of step +1, -1 or 0, leaving out the -1s.

    This walks the index of one axis (its H or W positions), not the data.
    """
    runs, start, size = [], 0, index.size
    while start < size:
        if index[start] < 0:
            start += 1
            continue
        step = 0
        if start + 1 < size and index[start + 1] >= 0 and abs(index[start + 1] - index[start]) == 1:
            step = int(index[start + 1] - index[start])
        stop = start + 1
        while stop < size and index[stop] >= 0 and index[stop] - index[stop - 1] == step:
            stop += 1
        runs.append(_Run(start, stop, int(index[start]), step))
        start = stop
    return runs


def _check_axis(size: int, before: int, after: int, mode: str, axis: str, shape) -> None:
    """Raise where torch refuses (or would read past the input for) this padding of one axis."""
    where = f"padding ({before}, {after}) of the {size} {axis} of input shape {shape}"
    kept = size - max(-before, 0) - max(-after, 0)
    if size + before + after < 0 or mode in ("constant", "circular") and kept < 0:
        raise ValueError(f"pad2d {where} crops more than the input holds")
    if mode in ("reflect", "replicate") and size == 0:
        raise ValueError(f"pad2d mode {mode!r} needs a non-empty input, got shape {shape}")
    if mode == "reflect" and max(before, after) >= size:
        raise ValueError(f"pad2d reflect {where}: each side must be less than {size}")
    if mode == "circular" and max(before, after) > kept:
        raise ValueError(
            f"pad2d circular {where} wraps around more than once: each side must be at most "
            f"the {max(kept, 0)} {axis} left after cropping"
        )


def pad2d(x: np.ndarray, padding, mode: str = "constant", value: float | None = None):
    """Pad the last two axes of ``x`` (torch.nn.functional.pad with (left, right, top, bottom)).

    ``mode`` is 'constant' (filled with ``value``, 0 by default), 'reflect', 'replicate' or
    'circular'; negative padding crops. Returns the output (..., H + top + bottom,
    W + left + right) and the cache for :func:`pad2d_backward`.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"pad2d expected a numpy.ndarray, got {type(x).__name__}")
    check_float(x, "pad2d", "input")
    if x.ndim < 2:
        raise ValueError(f"pad2d expected input with at least 2 dimensions, got shape {x.shape}")
    if mode not in MODES:
        raise ValueError(
            f"pad2d mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}"
        )
    if mode != "constant" and value is not None:
        raise ValueError(
            f"pad2d value is only used by mode 'constant', got {value!r} with {mode!r}"
        )
    left, right, top, bottom = padding = quadruple(padding)
    height, width = x.shape[-2:]
    _check_axis(height, top, bottom, mode, "rows", x.shape)
    _check_axis(width, left, right, mode, "columns", x.shape)
    out_hw = (height + top + bottom, width + left + right)
    row_index = _source_index(height, top, bottom, mode)
    column_index = _source_index(width, left, right, mode)
    cache = PadCache(x.shape, padding, _runs(row_index), _runs(column_index))
    shape = (*x.shape[:-2], *out_hw)
    if min(row_index.min(initial=0), column_index.min(initial=0)) < 0:
        out = np.full(shape, 0.0 if value is None else value, dtype=x.dtype)
    else:
        out = np.empty(shape, dtype=x.dtype)
    for rows in cache.rows:
        for columns in cache.columns:
            out[..., rows.outputs, columns.outputs] = x[..., rows.inputs, columns.inputs]
    return out, cache


def pad2d_backward(dout: np.ndarray, cache: PadCache) -> np.ndarray:
    """dL/dx given dL/dy: each output gradient added onto the input position it was read from."""
    left, right, top, bottom = cache.padding
    height, width = cache.input_shape[-2:]
    expected = (*cache.input_shape[:-2], height + top + bottom, width + left + right)
    if dout.shape != expected:
        raise ValueError(f"pad2d_backward expected dout of shape {expected}, got {dout.shape}")
    dx = np.zeros(cache.input_shape, dtype=dout.dtype)
    for rows in cache.rows:
        for columns in cache.columns:
            block = dout[..., rows.outputs, columns.outputs]
            if rows.step == 0:
                block = block.sum(axis=-2, keepdims=True)
            if columns.step == 0:
                block = block.sum(axis=-1, keepdims=True)
            dx[..., rows.inputs, columns.inputs] += block
    return dx
