"""Training throughput of zoo models (images/s) and the projected time of one epoch.

    python bench/throughput.py                       # resnet20 on CIFAR-shaped input
    python bench/throughput.py --model lenet5 --input-shape 1,28,28 --batch-size 64 \
        --epoch-size 60000
    mpiexec -n 2 python bench/throughput.py --threads 1   # data-parallel over 2 ranks

Each step is cnnkit.train.Trainer.train_step, the step `cnnkit train` runs (forward,
cross-entropy, backward, SGD with momentum), on random data; the median over ``--steps`` timed
steps after ``--warmup`` steps gives images/s, and ``--epoch-size`` images divided by it the
projected epoch time (CIFAR-10 has 50,000 training images). Started by an MPI launcher with K
ranks, each rank takes its shard of the global ``--batch-size`` and the gradients are summed
with one Allreduce per step, as in `cnnkit train --distributed`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import cnnkit as ck
from cnnkit.data.loader import shard_bounds
from cnnkit.distributed import Communicator, launched_ranks
from cnnkit.train import Trainer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--input-shape", default="3,32,32", help="C,H,W")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--epoch-size", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    return parser.parse_args()


def median_step_seconds(trainer: Trainer, x, y, steps: int, warmup: int) -> float:
    """Median wall time of ``steps`` calls of trainer.train_step(x, y) after ``warmup`` calls."""

    def step() -> float:
        began = time.perf_counter()
        trainer.train_step(x, y)
        return time.perf_counter() - began

    for _ in range(warmup):
        step()
    return statistics.median(step() for _ in range(steps))


def main() -> None:
    args = parse_args()
    ck.keep_freed_memory()  # as `cnnkit train` does
    communicator = Communicator() if launched_ranks() > 1 else None
    rank, size = (0, 1) if communicator is None else (communicator.rank, communicator.size)
    shape = tuple(int(v) for v in args.input_shape.split(","))
    options = {"input_size": shape[1:]} if ck.models.takes_option(args.model, "input_size") else {}
    model = ck.models.get(args.model, num_classes=10, in_channels=shape[0], **options)
    optimizer = ck.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = Trainer(model, optimizer, progress=False, communicator=communicator)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, *shape)).astype(np.float32)
    y = rng.integers(0, 10, size=args.batch_size)
    start, stop = shard_bounds(args.batch_size, rank, size)
    with threadpool_limits(args.threads):
        seconds = median_step_seconds(
            trainer, x[start:stop], y[start:stop], args.steps, args.warmup
        )
    if rank != 0:
        return
    rate = args.batch_size / seconds
    summed = sum(p.data.nbytes for p in model.parameters())
    reduced = "" if communicator is None else f", {summed:,} B all-reduced"
    print(
        f"{args.model} {shape} global batch {args.batch_size}, {size} rank(s) x {args.threads} "
        f"BLAS threads: {seconds * 1e3:.0f} ms/step{reduced}, {rate:.0f} images/s; one epoch of "
        f"{args.epoch_size:,} images: {args.epoch_size / rate / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
