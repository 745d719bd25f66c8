"""How many threads NumPy's BLAS and cnnkit's compiled kernels may use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

from cnnkit.functional import _compiled


@contextmanager
def limit_threads(count: int | None) -> Iterator[None]:
    """Run the block with at most ``count`` BLAS threads and numba threads (None: no limit)."""
    with threadpool_limits(count):
        if count is None or _compiled.numba is None:
            yield
            return
        previous = _compiled.numba.get_num_threads()
        _compiled.numba.set_num_threads(
            max(1, min(count, _compiled.numba.config.NUMBA_NUM_THREADS))
        )
        try:
            yield
        finally:
            _compiled.numba.set_num_threads(previous)
