"""Layers that move, select or join elements (ONNX Reshape, Transpose, Squeeze, Unsqueeze,
Concat of integers, Slice, Gather, Expand, Cast) and the shape computations around them (Shape,
ConstantOfShape, Range, Constant).

Each moves values without arithmetic, so its backward moves dL/dy back: the inverse reshape or
permutation, a split of the concatenation, a scatter of the slice or of the gathered entries.
They take integer tensors too (the shape arithmetic that torch emits runs on them).
"""

from __future__ import annotations

import numpy as np

from cnnkit.functional import activation as A
from cnnkit.nn.module import CachedModule, Module
from cnnkit.onnx.layers.arith import unbroadcast


def _axes(axes, rank: int) -> tuple[int, ...]:
    return tuple(sorted(int(a) % rank for a in axes))


class Reshape(CachedModule):
    """y = x.reshape(shape); a 0 copies the input's size there (unless allowzero), -1 is inferred.

    The shape is held (``shape``) or read at run time as the second input (ONNX Reshape).
    """

    def __init__(self, shape: tuple[int, ...] | None = None, allowzero: bool = False):
        super().__init__()
        self.shape, self.allowzero = shape, allowzero

    def forward(self, x: np.ndarray, shape: np.ndarray | None = None) -> np.ndarray:
        target = [int(s) for s in (self.shape if shape is None else shape)]
        if not self.allowzero:
            target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
        self._cache = x.shape
        return x.reshape(target)

    def backward(self, dout: np.ndarray):
        shape = self._take_cache()
        dx = dout.reshape(shape)
        return dx if self.shape is not None else (dx, None)

    def extra_repr(self) -> str:
        return "" if self.shape is None else f"shape={self.shape}"


class Transpose(CachedModule):
    """y = x.transpose(perm) (the axes reversed without perm); dL/dx = dy.transpose(perm^-1)."""

    def __init__(self, perm: tuple[int, ...] | None = None):
        super().__init__()
        self.perm = perm

    def forward(self, x: np.ndarray) -> np.ndarray:
        perm = tuple(reversed(range(x.ndim))) if self.perm is None else self.perm
        self._cache = perm
        return x.transpose(perm)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.transpose(np.argsort(self._take_cache()))

    def extra_repr(self) -> str:
        return f"perm={self.perm}"


class Squeeze(CachedModule):
    """Drop the size-1 ``axes`` (every size-1 axis when None); dL/dx = dy reshaped back."""

    def __init__(self, axes: tuple[int, ...] | None = None):
        super().__init__()
        self.axes = axes

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._cache = x.shape
        if self.axes is None:
            return np.squeeze(x)
        return np.squeeze(x, axis=_axes(self.axes, x.ndim))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self._take_cache())

    def extra_repr(self) -> str:
        return f"axes={self.axes}"


class Unsqueeze(CachedModule):
    """Insert size-1 axes at ``axes`` (positions in the output); dL/dx = dy reshaped back."""

    def __init__(self, axes: tuple[int, ...]):
        super().__init__()
        self.axes = axes

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._cache = x.shape
        return np.expand_dims(x, _axes(self.axes, x.ndim + len(self.axes)))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self._take_cache())

    def extra_repr(self) -> str:
        return f"axes={self.axes}"


class Concat(CachedModule):
    """y = the inputs joined along ``axis``, of any dtype: the shape arithmetic's integer
    vectors (float data takes cnnkit.nn.Concat); backward splits dL/dy at the same bounds."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        axis = self.axis % xs[0].ndim
        self._cache = (axis, np.cumsum([x.shape[axis] for x in xs])[:-1])
        return np.concatenate(xs, axis=axis)

    def backward(self, dout: np.ndarray):
        axis, bounds = self._take_cache()
        return tuple(np.split(dout, bounds, axis=axis))

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class Slice(CachedModule):
    """y = x[starts:ends:steps] on ``axes`` (ONNX Slice: negative bounds count from the end and
    out-of-range bounds are clamped, as in Python); dL/dx is zero outside the slice.

    The bounds are read at run time (inputs 1 to 4, as ONNX gives them), so a slice whose bounds
    come from the input's shape (torch's ``chunk``) works at any batch size; or they are held
    (``bounds``: starts, ends, axes, as opsets before 10 give them).
    """

    def __init__(self, bounds: tuple[np.ndarray, ...] = ()):
        super().__init__()
        self.bounds = bounds

    def forward(self, x: np.ndarray, *bounds) -> np.ndarray:
        given = len(bounds)
        bounds = bounds or self.bounds
        starts, ends, axes, steps = bounds + (None,) * (4 - len(bounds))
        index = [slice(None)] * x.ndim
        axes = range(len(starts)) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            index[int(axis) % x.ndim] = slice(int(start), int(end), int(step))
        index = tuple(index)
        self._cache = (x.shape, index, given)
        return x[index]

    def backward(self, dout: np.ndarray):
        shape, index, given = self._take_cache()
        dx = np.zeros(shape, dtype=dout.dtype)
        dx[index] = dout
        return (dx,) + (None,) * given if given else dx


class Gather(CachedModule):
    """y = take(x, indices, axis) (ONNX Gather); backward adds dL/dy into the taken entries."""

    def __init__(self, axis: int = 0, indices: np.ndarray | None = None):
        super().__init__()
        self.axis, self.indices = axis, indices

    def forward(self, x: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
        indices = self.indices if indices is None else indices
        axis = self.axis % x.ndim
        self._cache = (x.shape, indices, axis)
        return np.take(x, indices, axis=axis)

    def backward(self, dout: np.ndarray):
        shape, indices, axis = self._take_cache()
        grads = np.moveaxis(dout, tuple(range(axis, axis + indices.ndim)), range(indices.ndim))
        flat = (np.asarray(indices) % shape[axis]).reshape(-1)
        rest = shape[:axis] + shape[axis + 1 :]
        rows = grads.reshape(flat.size, -1)
        summed = np.zeros((shape[axis], rows.shape[1]), dtype=dout.dtype)
        if flat.size:  # repeated indices: sort, then one segment sum per distinct index
            order = np.argsort(flat, kind="stable")
            targets, starts = np.unique(flat[order], return_index=True)
            summed[targets] = np.add.reduceat(rows[order], starts, axis=0)
        dx = np.moveaxis(summed.reshape((shape[axis], *rest)), 0, axis)
        return dx if self.indices is not None else (dx, None)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class Expand(CachedModule):
    """y = x broadcast against ``shape`` (ONNX Expand); dL/dx sums over the broadcast axes."""

    def forward(self, x: np.ndarray, shape: np.ndarray) -> np.ndarray:
        self._cache = x.shape
        target = np.broadcast_shapes(x.shape, tuple(int(s) for s in shape))
        return np.broadcast_to(x, target).copy()

    def backward(self, dout: np.ndarray):
        return unbroadcast(dout, self._take_cache()), None


class Cast(CachedModule):
    """y = x converted to ``dtype`` (ONNX Cast); dL/dx = dy in the input's float type."""

    def __init__(self, dtype):
        super().__init__()
        self.dtype_to = np.dtype(dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._cache = x.dtype
        return x.astype(self.dtype_to)

    def backward(self, dout: np.ndarray):
        dtype = self._take_cache()
        return dout.astype(dtype) if dtype.kind == "f" else None

    def extra_repr(self) -> str:
        return f"to={self.dtype_to.name}"


class Shape(Module):
    """The input's shape as an int64 vector, axes [start, end) of it (ONNX Shape)."""

    def __init__(self, start: int = 0, end: int | None = None):
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.array(x.shape[self.start : self.end], dtype=np.int64)


class ConstantOfShape(Module):
    """A tensor of the given shape filled with ``value`` (ONNX ConstantOfShape)."""

    def __init__(self, value: np.ndarray):
        super().__init__()
        self.value = value

    def forward(self, shape: np.ndarray) -> np.ndarray:
        return np.full(tuple(int(s) for s in shape), self.value.reshape(-1)[0], self.value.dtype)


class Range(Module):
    """start, start + delta, ... up to limit, exclusive (ONNX Range)."""

    def forward(self, start, limit, delta) -> np.ndarray:
        return np.arange(start, limit, delta, dtype=np.result_type(start, limit, delta))


class Constant(Module):
    """A fixed value with no input (ONNX Constant); the loader folds it into the graph."""

    def __init__(self, value: np.ndarray):
        super().__init__()
        self.value = value

    def forward(self) -> np.ndarray:
        return self.value


class Flatten2d(CachedModule):
    """(d0, ..., dn) -> (d0 * ... * d(axis-1), d(axis) * ... * dn) (ONNX Flatten at any axis)."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, x: np.ndarray) -> np.ndarray:
        axis = self.axis + x.ndim if self.axis < 0 else self.axis
        self._cache = x.shape
        return x.reshape(int(np.prod(x.shape[:axis])), -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self._take_cache())

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class FlatSoftmax(CachedModule):
    """Softmax (or log-softmax) over every axis from ``axis`` on, taken together: the input as
    (prod(shape[:axis]), prod(shape[axis:])), the softmax along its rows, reshaped back (ONNX
    Softmax / LogSoftmax before opset 13). Backward: cnnkit's softmax backward on the rows."""

    def __init__(self, axis: int = 1, log: bool = False):
        super().__init__()
        self.axis, self.log = axis, log

    def forward(self, x: np.ndarray) -> np.ndarray:
        axis = self.axis + x.ndim if self.axis < 0 else self.axis
        rows = x.reshape(int(np.prod(x.shape[:axis])), -1)
        y, cache = (A.log_softmax if self.log else A.softmax)(rows, axis=1)
        self._cache = (x.shape, cache)
        return y.reshape(x.shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, cache = self._take_cache()
        rows = dout.reshape(cache.shape)
        backward = A.log_softmax_backward if self.log else A.softmax_backward
        return backward(rows, cache, axis=1).reshape(shape)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, log={self.log}"
