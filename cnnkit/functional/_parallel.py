"""A batch split between threads: each thread runs a kernel on its own images, BLAS on one
thread each, instead of one thread running every copy and loop between multi-threaded GEMMs.

A convolution's GEMMs use every BLAS thread, but its gathers, shifted sums, crops and compiled
loops are single-threaded; a 16-channel ResNet-20 layer (batch 128, 32 x 32) spends more time
in those than in its GEMMs. Two halves of the batch on two threads, each running the whole
kernel with single-threaded BLAS, keep both cores busy throughout (bench/bench.py, AMD EPYC,
two threads: ResNet-20's 16-channel 3x3 layer forward + backward 30.5 -> 21.3 ms, torch 19.2).
The kernels release the GIL in NumPy's copies, BLAS and numba's nogil loops, and their scratch
buffers are per thread (cnnkit.functional._scratch). The number of threads is the number BLAS
runs (threadpoolctl's ``threadpool_limits`` and ``cnnkit train --threads`` set it), so one
BLAS thread means no split and the kernels run exactly as before.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

# smallest share of a batch worth a thread: handing work to the pool and back costs about
# 0.1 ms. Measured with bench-like settings (2 threads, AMD EPYC, freed memory kept), forward +
# backward, unsplit vs split, us: batch norm + ReLU 2 MiB 577 / 826, 8 MiB 3222 / 2208; ReLU
# 2 MiB 132 / 260, 8 MiB 1045 / 797 (loops: MIN_LOOP_PART_BYTES); convolutions 512 KiB of
# 16 x 16 input 2124 / 2742 but 2 MiB 18185 / 16483 (64 ch, 8 x 8), and a ResNet-20 step
# (batch 128, the first layer's input 1.5 MiB) 471-497 ms with 256 KiB parts against 546-553
# with 1 MiB parts, in alternation in one process
MIN_PART_BYTES = 256 * 2**10
MIN_LOOP_PART_BYTES = 2 * 2**20


@functools.cache
def _blas() -> ThreadpoolController:
    """The BLAS thread pools NumPy calls (found once: a scan of the loaded libraries)."""
    return ThreadpoolController().select(user_api="blas")


def blas_threads() -> int:
    """How many threads BLAS runs now (threadpool_limits included; under a microsecond)."""
    return max((lib.get_num_threads() for lib in _blas().lib_controllers), default=1)


@functools.cache
def _pool(workers: int, process: int) -> ThreadPoolExecutor:
    """The worker threads of this process (a forked child gets its own: its parent's threads
    do not exist there)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnnkit")


def split(count: int, parts: int) -> list[slice]:
    """``count`` items as at most ``parts`` contiguous slices of sizes differing by at most 1."""
    parts = max(1, min(parts, count))
    bounds = [count * k // parts for k in range(parts + 1)]
    return [slice(bounds[k], bounds[k + 1]) for k in range(parts)]


def parts_for(count: int, nbytes: int, min_part_bytes: int | None = None) -> list[slice]:
    """The slices of a batch of ``count`` images taking ``nbytes``, one per BLAS thread and at
    least ``min_part_bytes`` (default MIN_PART_BYTES, a convolution's) each; one slice: no
    split."""
    floor = MIN_PART_BYTES if min_part_bytes is None else min_part_bytes
    return split(count, min(blas_threads(), nbytes // max(floor, 1)))


def run(tasks: Sequence[Callable[[], T]], batch: int = 1) -> list[T]:
    """[task() for task in tasks], concurrently: the first on the calling thread, the rest on
    worker threads, BLAS limited to one thread meanwhile and the caller's grad mode in force.

    A single task for a ``batch`` of several images, too small to split, also runs with one
    BLAS thread: after a multi-threaded call OpenBLAS' workers spin for about 0.1 s, and would
    take a core from the next layer's split (mini-Xception inference: one unsplit first layer
    made every later split slower than none). One image keeps every BLAS thread.
    Every task finishes before this returns or raises (the first error is raised), so no
    worker is left writing into a caller's array.
    """
    if len(tasks) == 1:
        if batch == 1:
            return [tasks[0]()]
        with _blas().limit(limits=1):
            return [tasks[0]()]
    from cnnkit.nn.grad_mode import is_grad_enabled, no_grad  # cnnkit.nn imports functional

    grad_enabled = is_grad_enabled()

    def in_callers_mode(task: Callable[[], T]) -> T:
        if grad_enabled:
            return task()
        with no_grad():
            return task()

    with _blas().limit(limits=1):
        futures = [
            _pool(len(tasks) - 1, os.getpid()).submit(in_callers_mode, task) for task in tasks[1:]
        ]
        try:
            first = tasks[0]()
        finally:
            rest = [future.exception() for future in futures]
        for error in rest:
            if error is not None:
                raise error
        return [first] + [future.result() for future in futures]


def matmul(a: np.ndarray, b: np.ndarray, batch: int) -> np.ndarray:
    """a (M, K) @ b (K, N), the columns of b and of the product split between the threads,
    one BLAS thread each (each part at least MIN_PART_BYTES of b and the product), for a layer
    of ``batch`` images.

    Columns, not rows: a fully connected layer's weight is usually the largest operand, and
    each thread then reads only its own share of it. Like a convolution, a product too small to
    split runs on one BLAS thread when the batch holds several images, so that no OpenBLAS
    worker is left spinning into the next layer's split (MobileNetV2 at batch 16: the classifier
    and global pooling on two BLAS threads made the next pass's first convolution 8.9 -> 13.3
    ms), and keeps every BLAS thread for one image.
    """
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    parts = parts_for(b.shape[1], b.nbytes + out.nbytes)
    tasks = [functools.partial(np.matmul, a, b[:, part], out=out[:, part]) for part in parts]
    run(tasks, batch=batch)
    return out


def by_images(
    kernel: Callable[..., None],
    *args,
    totals: Sequence[np.ndarray] = (),
    min_part_bytes: int = MIN_LOOP_PART_BYTES,
) -> None:
    """kernel(*args, *totals), its images split between threads (see :func:`parts_for`; a
    loop makes one pass over memory, so a part needs MIN_LOOP_PART_BYTES of its first batched
    array to pay for its thread, unless ``min_part_bytes`` says otherwise for a kernel of
    several passes).

    Every array argument of three or more axes, (N, C, ...), has the images on axis 0 and is
    cut into contiguous parts; arrays of fewer axes (per channel, per output position) and
    scalars go whole to every part, and without a batched argument the kernel runs once.
    ``totals`` are the kernel's per-channel sums, which it assigns: each part fills its own,
    and ``totals`` get their sum, part by part in image order (the same result whatever the
    threads' timing).
    """

    def batched(arg) -> bool:
        return isinstance(arg, np.ndarray) and arg.ndim >= 3

    images = next((a for a in args if batched(a)), None)
    if images is None:
        slices = [slice(None)]
    else:
        slices = parts_for(images.shape[0], images.nbytes, min_part_bytes)
    if len(slices) == 1:
        kernel(*args, *totals)
        return

    def part(images: slice) -> list[np.ndarray]:
        own = [np.empty_like(total) for total in totals]
        kernel(*(a[images] if batched(a) else a for a in args), *own)
        return own

    results = run([functools.partial(part, images) for images in slices])
    for k, total in enumerate(totals):
        total[...] = results[0][k]
        for more in results[1:]:
            total += more[k]
