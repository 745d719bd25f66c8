"""`cnnkit gradcheck`: a zoo model's backward pass against central differences."""

from __future__ import annotations

import math

import numpy as np

from cnnkit.cli.errors import UsageError
from cnnkit.cli.options import MAX_INPUT_VALUES, POSITIVE, SEED, model_name, number, shape
from cnnkit.cli.zoo import build_model
from cnnkit.gradcheck import gradcheck


def add_parser(commands) -> None:
    """Add `cnnkit gradcheck` to the sub-parsers ``commands``."""
    check = commands.add_parser(
        "gradcheck",
        help="check a model's backward pass numerically",
        description="Compare a zoo model's backward pass in float64 with central differences "
        "on random input; exit status 1 if the worst relative error exceeds the tolerance.",
    )
    check.add_argument(
        "--model", type=model_name, default="lenet5", help="zoo model (default lenet5)"
    )
    check.add_argument(
        "--input-shape",
        type=shape,
        default=(1, 28, 28),
        help="C,H,W of one input (default 1,28,28)",
    )
    check.add_argument("--batch", type=POSITIVE, default=2, help="inputs (default 2)")
    check.add_argument(
        "--entries",
        type=POSITIVE,
        default=20,
        help="random entries checked per array (default 20)",
    )
    check.add_argument(
        "--tolerance",
        type=number(0, low_open=True),
        default=1e-5,
        help="largest relative error that passes (default 1e-5)",
    )
    check.add_argument(
        "--seed", type=SEED, default=0, help="seed of the weights and the input (default 0)"
    )


def run(args) -> int:
    """Run `cnnkit gradcheck`: exit status 1 when the backward pass is off."""
    values = args.batch * math.prod(args.input_shape)
    if values > MAX_INPUT_VALUES:
        raise UsageError(
            f"argument --batch: expected at most {MAX_INPUT_VALUES:,} input values in all, got "
            f"--batch {args.batch} of {','.join(map(str, args.input_shape))} ({values:,})"
        )
    model = build_model(
        args.model, args.input_shape, num_classes=10, dtype="float64", seed=args.seed
    )
    x = np.random.default_rng(args.seed).standard_normal((args.batch, *args.input_shape))
    report = gradcheck(
        model, x, max_per_array=args.entries, tolerance=args.tolerance, seed=args.seed
    )
    print(f"{args.model}: {report}")
    return 0 if report.passed else 1
