"""`cnnkit gradcheck`: a zoo model's backward pass against central differences."""

from __future__ import annotations

import numpy as np

from cnnkit import models
from cnnkit.cli.options import model_name, positive, shape
from cnnkit.gradcheck import gradcheck


def add_parser(commands) -> None:
    """Add `cnnkit gradcheck` to the sub-parsers ``commands``."""
    check = commands.add_parser(
        "gradcheck",
        help="check a model's backward pass numerically",
        description="Compare a zoo model's backward pass in float64 with central differences "
        "on random input; exit status 1 if the worst relative error exceeds the tolerance.",
    )
    check.add_argument("--model", type=model_name, default="lenet5")
    check.add_argument(
        "--input-shape",
        type=shape,
        default=(1, 28, 28),
        help="C,H,W of one input (default 1,28,28)",
    )
    check.add_argument("--batch", type=positive(int), default=2)
    check.add_argument(
        "--entries",
        type=positive(int),
        default=20,
        help="random entries checked per array (default 20)",
    )
    check.add_argument("--tolerance", type=positive(float), default=1e-5)
    check.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    """Run `cnnkit gradcheck`: exit status 1 when the backward pass is off."""
    model = models.get(
        args.model,
        num_classes=10,
        in_channels=args.input_shape[0],
        dtype="float64",
        seed=args.seed,
    )
    x = np.random.default_rng(args.seed).standard_normal((args.batch, *args.input_shape))
    report = gradcheck(
        model, x, max_per_array=args.entries, tolerance=args.tolerance, seed=args.seed
    )
    print(f"{args.model}: {report}")
    return 0 if report.passed else 1
