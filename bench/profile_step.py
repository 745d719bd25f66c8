"""Where a training step's time goes, by layer type and pass, in cnnkit and PyTorch side by side.

    python bench/profile_step.py                     # resnet20, batch 128, 2 threads
    python bench/profile_step.py --model lenet5 --steps 20

The step is bench.py's train-step case (forward, cross-entropy, backward, SGD with momentum) on
the same batch and weights for both libraries. cnnkit's side times the forward and backward
calls of every leaf module (a layer with no children) and adds them up by layer type; torch's
side runs each step under ``torch.profiler`` and adds up the self CPU time of the aten
operators that implement each layer type (``TORCH_OPERATORS``). "other" is the rest of the
step's wall time: loss, linear and pooling layers, residual additions, the optimizer and each
library's own overhead. Steps alternate between the libraries, waiting for the process to go
idle before each (bench.settle); the table shows the median over ``--steps`` steps of each
figure. Instrumented steps run slightly slower than bench.py's (the profiler costs torch a few
ms a step), so compare the ratios per row rather than the totals across scripts.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import cnnkit as ck
from bench import TRAIN_STEPS, quiet_stderr, settle, train_step_pair

TORCH_OPERATORS = {
    ("Conv2d", "forward"): {"aten::mkldnn_convolution", "aten::_convolution", "aten::convolution"},
    ("Conv2d", "backward"): {"aten::convolution_backward"},
    ("BatchNorm2d", "forward"): {
        "aten::batch_norm",
        "aten::_batch_norm_impl_index",
        "aten::native_batch_norm",
    },
    ("BatchNorm2d", "backward"): {"aten::native_batch_norm_backward"},
    ("ReLU", "forward"): {"aten::relu", "aten::clamp_min"},
    ("ReLU", "backward"): {"aten::threshold_backward"},
    ("MaxPool2d", "forward"): {"aten::max_pool2d", "aten::max_pool2d_with_indices"},
    ("MaxPool2d", "backward"): {"aten::max_pool2d_with_indices_backward"},
}
"""(cnnkit layer type, pass) -> the torch operators whose self time is that layer's work."""

PASSES = ("forward", "backward")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(TRAIN_STEPS), default="resnet20")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


@contextmanager
def timed_leaf_modules(model: ck.nn.Module) -> Iterator[dict]:
    """While open, every leaf module adds the seconds of its forward and backward calls to the
    yielded totals[(type name, pass)]; on exit the timers are removed again."""
    totals: dict = defaultdict(float)

    def timed(method, key):
        def call(*args, **kwargs):
            began = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                totals[key] += time.perf_counter() - began

        return call

    leaves = [m for _, m in model.named_modules() if next(m.children(), None) is None]
    for module in leaves:
        for name in PASSES:
            setattr(module, name, timed(getattr(module, name), (type(module).__name__, name)))
    try:
        yield totals
    finally:
        for module in leaves:
            for name in PASSES:
                vars(module).pop(name, None)


def cnnkit_step(model, ours) -> dict:
    """Seconds by (layer type, pass) of one step, and the step's wall time under "total"."""
    with timed_leaf_modules(model) as totals:
        settle()
        began = time.perf_counter()
        ours()
        totals["total"] = time.perf_counter() - began
    return totals


def torch_step(theirs) -> dict:
    """Seconds by (layer type, pass) of one profiled step, and its wall time under "total"."""
    settle()
    began = time.perf_counter()
    with (
        quiet_stderr(),
        torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile,
    ):
        theirs()
    totals: dict = {"total": time.perf_counter() - began}
    self_seconds = {e.key: e.self_cpu_time_total / 1e6 for e in profile.key_averages()}
    for key, operators in TORCH_OPERATORS.items():
        totals[key] = sum(self_seconds.get(op, 0.0) for op in operators)
    return totals


def table(ours: list[dict], theirs: list[dict]) -> str:
    """Markdown rows: median ms of each side and their ratio, per layer type and pass."""
    keys = [k for k in TORCH_OPERATORS if any(s.get(k) for s in ours)]
    lines = ["| layer type | pass | cnnkit ms | torch ms | ratio |", "|---|---|---:|---:|---:|"]

    def row(label, kind, mine, other):
        ratio = f"{mine / other:.2f}" if other else "-"
        lines.append(f"| {label} | {kind} | {mine * 1e3:.1f} | {other * 1e3:.1f} | {ratio} |")

    for key in keys:
        row(
            *key,
            statistics.median(s.get(key, 0.0) for s in ours),
            statistics.median(s[key] for s in theirs),
        )

    def rest(steps):
        return statistics.median(s["total"] - sum(s.get(k, 0.0) for k in keys) for s in steps)

    row("other", "both", rest(ours), rest(theirs))
    totals = [statistics.median(s["total"] for s in side) for side in (ours, theirs)]
    row("whole step", "both", *totals)
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    ck.keep_freed_memory()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        batch, shape = TRAIN_STEPS[args.model]
        model, ours, theirs = train_step_pair(args.model, batch, shape, 10, np.float32)
        for _ in range(args.warmup):
            ours()
            theirs()
        steps = [(cnnkit_step(model, ours), torch_step(theirs)) for _ in range(args.steps)]
    print(f"{args.model} training step, batch {batch}, {args.threads} threads, {args.steps} steps")
    print(table([a for a, _ in steps], [b for _, b in steps]))


if __name__ == "__main__":
    main()
