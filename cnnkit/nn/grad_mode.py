"""Whether forward passes keep what backward needs: yes by default, no inside ``no_grad()``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless this thread is inside ``no_grad()`` (as torch.is_grad_enabled)."""
    return getattr(_state, "enabled", True)


@contextmanager
def no_grad() -> Iterator[None]:
    """Run forward passes that keep no cache for backward (as torch.no_grad), for inference.

    Every layer's cache (its input, mask or normalised input) is dropped as soon as the layer
    returns, so the peak memory of a forward pass is a few layers' activations instead of all
    of them; calling backward afterwards raises. Batch norm in training mode still updates its
    running statistics. Per thread; nests; usable as a decorator.
    """
    previous = is_grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = previous
