"""Time every CNNKIT_CONV_PATH that can take a convolution, on the shapes the dispatcher rule
was drawn from.

Usage::

    python bench/conv_paths.py [--threads 1] [--repeats 5] [--dtype float32]
                               [--layers 64x32x64x14,...]   (batch x C_in x C_out x size)

Each layer is a 3x3 'same' convolution (1x1 for a layer written with a trailing "p"); the
table gives the median milliseconds of a forward pass and of forward + every gradient, per
path, and which path the auto rule takes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import cnnkit
from cnnkit.functional import conv
from cnnkit.functional.conv import conv2d, conv2d_backward

LAYERS = (
    "64x32x64x14,128x64x64x16,32x128x128x32,128x16x16x32,128x32x32x16,128x64x64x8,"
    "32x3x16x32,8x256x256x14,8x512x512x7,1x512x512x7,1x64x64x56"
)
PATHS = ("grid", "im2col", "winograd2", "winograd4")


def timed(path: str, x, weight, dout, repeats: int) -> tuple[float, float]:
    """Median ms of (forward, forward + backward) with CNNKIT_CONV_PATH=path."""
    os.environ["CNNKIT_CONV_PATH"] = path
    forward, both = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        _, cache = conv2d(x, weight, None, padding=1)
        middle = time.perf_counter()
        conv2d_backward(dout, cache)
        forward.append((middle - start) * 1e3)
        both.append((time.perf_counter() - start) * 1e3)
    return statistics.median(forward[1:]), statistics.median(both[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--layers", default=LAYERS)
    args = parser.parse_args()
    threadpool_limits(args.threads)
    cnnkit.keep_freed_memory()  # as bench.py and every cnnkit command: no page faults
    rng = np.random.default_rng(0)
    print(f"{'layer':>16} {'auto':>10} " + " ".join(f"{p + ' fwd/fwd+bwd':>24}" for p in PATHS))
    for layer in args.layers.split(","):
        n, c_in, c_out, size = map(int, layer.split("x"))
        x = rng.standard_normal((n, c_in, size, size)).astype(args.dtype)
        weight = rng.standard_normal((c_out, c_in, 3, 3)).astype(args.dtype)
        dout = rng.standard_normal((n, c_out, size, size)).astype(args.dtype)
        os.environ["CNNKIT_CONV_PATH"] = "auto"
        same, one = ((1, 1), (1, 1)), (1, 1)
        auto = conv._plan(x.shape, weight.shape, 1, one, same, one, (size, size), x.dtype)[0]
        cells = [timed(path, x, weight, dout, args.repeats) for path in PATHS]
        text = " ".join(f"{f:>11.2f} /{b:>10.2f}" for f, b in cells)
        print(f"{layer:>16} {auto:>10} {text}", flush=True)


if __name__ == "__main__":
    main()
