"""Reusable buffers for the large temporaries of one kernel call (column matrices, GEMM results).

A fresh array of tens of megabytes is new memory from the operating system on every call, and
the page faults of touching it cost as much as the copy that fills it. A temporary that dies
before its kernel returns can instead live in a buffer kept per thread and per purpose, and
reused by every later call; it must never escape the kernel that asked for it.
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def scratch(purpose: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array of ``shape`` in this thread's buffer for ``purpose``."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buffers = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get(purpose)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = np.empty(nbytes, dtype=np.uint8)
        buffers[purpose] = buffer
    return buffer[:nbytes].view(dtype).reshape(shape)
