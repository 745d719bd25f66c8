"""Bytes all-reduced per training step for each zoo model, and an estimate of data-parallel scaling.

    python bench/scaling.py                                  # every zoo model, B = 256
    python bench/scaling.py --models resnet20,xception --ranks 8,16,64 --latency-us 50

Data-parallel training (cnnkit.distributed) sums every gradient once per step: each rank sends
and receives the float32 gradients, S = 4 * parameters bytes. A ring all-reduce over K machines
takes about

    t_allreduce = 2 (K - 1) / K * S / bandwidth + 2 (K - 1) * latency,

plus one more all-reduce of three numbers (the global batch size, loss and correct count), while
each rank computes a step on B / K images. The script measures this machine's training
step time per image at ``--measure-batch`` images (Trainer.train_step: forward, loss, backward,
SGD) and assumes it scales linearly with the batch, t_compute = (B / K) * t_image. It reports
the efficiency t_compute / (t_compute + t_allreduce) (no overlap of communication with
computation, as in cnnkit) and the speedup K * efficiency over one machine of the same speed.
It is a model, not a measurement on a cluster.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from threadpoolctl import threadpool_limits
from throughput import median_step_seconds

import cnnkit as ck
from cnnkit.train import Trainer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(ck.models.list()))
    parser.add_argument("--global-batch", type=int, default=256)
    parser.add_argument("--ranks", default="8,64", help="machine counts to estimate")
    parser.add_argument("--bandwidth-gbps", default="10,100", help="link speeds in Gb/s")
    parser.add_argument("--latency-us", type=float, default=30.0, help="per message, one hop")
    parser.add_argument("--measure-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    return parser.parse_args()


def seconds_per_image(name: str, batch: int) -> float:
    """Median time of a training step on ``batch`` random images, divided by ``batch``."""
    model = ck.models.get(name)
    trainer = Trainer(model, ck.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *model.default_input_shape)).astype(np.float32)
    y = rng.integers(0, model(x[:1]).shape[1], size=batch)
    return median_step_seconds(trainer, x, y, steps=2, warmup=1) / batch


def ring_allreduce_seconds(nbytes: int, ranks: int, gbps: float, latency: float) -> float:
    """Time of a bandwidth-optimal ring all-reduce of ``nbytes`` over ``ranks`` machines."""
    return 2 * (ranks - 1) / ranks * nbytes * 8 / (gbps * 1e9) + 2 * (ranks - 1) * latency


def main() -> None:
    args = parse_args()
    ranks = [int(k) for k in args.ranks.split(",")]
    links = [float(g) for g in args.bandwidth_gbps.split(",")]
    latency = args.latency_us * 1e-6
    header = "| model (default classes) | parameters | MB per step | step ms/image here |"
    columns = [(k, g) for k in ranks for g in links]
    header += "".join(f" K={k}, {g:g} Gb/s |" for k, g in columns)
    print(f"global batch {args.global_batch}, latency {args.latency_us:g} us, ring all-reduce;")
    print("each K column: all-reduce ms / compute ms per step -> speedup over one machine\n")
    print(header)
    print("|---|---:|---:|---:|" + "---:|" * len(columns))
    with threadpool_limits(args.threads):
        for name in args.models.split(","):
            parameters = ck.models.get(name).num_parameters()
            nbytes = 4 * parameters
            per_image = seconds_per_image(name, args.measure_batch)
            cells = []
            for k, gbps in columns:
                compute = args.global_batch / k * per_image
                reduce = ring_allreduce_seconds(nbytes, k, gbps, latency)
                reduce += ring_allreduce_seconds(24, k, gbps, latency)
                speedup = k * compute / (compute + reduce)
                cells.append(f"{reduce * 1e3:.1f} / {compute * 1e3:.0f} -> {speedup:.1f}x")
            print(
                f"| {name} | {parameters:,} | {nbytes / 1e6:.2f} | {per_image * 1e3:.1f} | "
                + " | ".join(cells)
                + " |"
            )


if __name__ == "__main__":
    main()
