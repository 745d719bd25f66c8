"""Float32 rounding of each 3x3 convolution path against the same layer in float64.

Usage::

    python bench/winograd_error.py [--channels 16,64,128,256,512] [--size 16] [--batch 8]

For every C_in (= C_out), He-initialised weights (std sqrt(2 / (9 C_in))), a unit normal
input and a unit normal dL/dy, each CNNKIT_CONV_PATH runs the layer in float32 and in float64.
Printed per path and quantity (output, dL/dx, dL/dW): the worst |y32 - y64| / max |y64| and
the worst |y32 - y64| / (atol + rtol |y64|) with the tests' float32 tolerance (rtol 1e-4,
atol 1e-5): the layer passes that tolerance where it is at most 1.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from threadpoolctl import threadpool_limits

from cnnkit.functional.conv import conv2d, conv2d_backward

RTOL, ATOL = 1e-4, 1e-5
PATHS = ("im2col", "grid", "winograd2", "winograd4")


def run(path: str, x, weight, dout):
    """(output, dL/dx, dL/dW) of the 3x3 'same' layer on ``path``."""
    os.environ["CNNKIT_CONV_PATH"] = path
    out, cache = conv2d(x, weight, None, padding=1)
    dx, dweight, _ = conv2d_backward(dout, cache)
    return out, dx, dweight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", default="16,64,128,256,512")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    threadpool_limits(1)
    print(f"{'C_in':>5} {'path':>10} {'quantity':>8} {'max err / max|y|':>17} {'/ tolerance':>12}")
    for channels in map(int, args.channels.split(",")):
        rng = np.random.default_rng(channels)
        x = rng.standard_normal((args.batch, channels, args.size, args.size))
        weight = rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(2 / (9 * channels))
        dout = rng.standard_normal((args.batch, channels, args.size, args.size))
        for path in PATHS:
            exact = run(path, x, weight, dout)
            rounded = run(path, *(a.astype(np.float32) for a in (x, weight, dout)))
            for name, got, want in zip(("output", "dL/dx", "dL/dW"), rounded, exact, strict=True):
                error = np.abs(got - want)
                relative = error.max() / np.abs(want).max()
                margin = (error / (ATOL + RTOL * np.abs(want))).max()
                print(f"{channels:>5} {path:>10} {name:>8} {relative:>17.1e} {margin:>12.2f}")


if __name__ == "__main__":
    main()
