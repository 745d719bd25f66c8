"""Keep freed memory in the process for the next training step instead of returning it.

A training step allocates and frees the same large activation and gradient arrays every step.
glibc's malloc serves arrays over its mmap threshold with fresh pages from the operating system
and trims the top of its heap when freed memory piles up there, so the next step pays a page
fault for every 4 KiB it writes to: about 27,000 faults and 0.1 s of kernel time per ResNet-20
step at batch 128 on a virtual machine. Raising both thresholds (mallopt) keeps freed arrays in
the heap, where the next step reuses them; the process then holds on to its peak memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20
"""glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems: larger arrays are still mmapped."""


def keep_freed_memory() -> bool:
    """Tell glibc malloc to keep freed memory for reuse (mallopt); False where libc is not glibc.

    Process-wide and idempotent; ``cnnkit`` commands call it at start.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trimmed = mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    mapped = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    return trimmed == 1 and mapped == 1
