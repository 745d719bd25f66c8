"""Training throughput of zoo models (images/s) and the projected time of one epoch.

    python bench/throughput.py                       # resnet20 on CIFAR-shaped input
    python bench/throughput.py --model lenet5 --input-shape 1,28,28 --batch-size 64 \
        --epoch-size 60000

Each step is a full training step (forward, cross-entropy, backward, SGD with momentum) on random
data; the median over ``--steps`` timed steps after ``--warmup`` steps gives images/s, and
``--epoch-size`` images divided by it the projected epoch time (CIFAR-10 has 50,000 training
images).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import cnnkit as ck


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--input-shape", default="3,32,32", help="C,H,W")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--epoch-size", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    shape = tuple(int(v) for v in args.input_shape.split(","))
    options = {"input_size": shape[1:]} if ck.models.takes_option(args.model, "input_size") else {}
    model = ck.models.get(args.model, num_classes=10, in_channels=shape[0], **options)
    optimizer = ck.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = ck.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, *shape)).astype(np.float32)
    y = rng.integers(0, 10, size=args.batch_size)

    def step() -> float:
        start = time.perf_counter()
        loss_fn(model(x), y)
        model.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()
        return time.perf_counter() - start

    with threadpool_limits(args.threads):
        for _ in range(args.warmup):
            step()
        seconds = statistics.median(step() for _ in range(args.steps))
    rate = args.batch_size / seconds
    print(
        f"{args.model} {shape} batch {args.batch_size}, {args.threads} BLAS threads: "
        f"{seconds * 1e3:.0f} ms/step, {rate:.0f} images/s; one epoch of {args.epoch_size:,} "
        f"images: {args.epoch_size / rate / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
