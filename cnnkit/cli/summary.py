"""`cnnkit summary`: the Keras-style layer table of a zoo model."""

from __future__ import annotations

from cnnkit import models
from cnnkit.cli.options import model_name, positive, shape


def add_parser(commands) -> None:
    """Add `cnnkit summary` to the sub-parsers ``commands``."""
    summary = commands.add_parser(
        "summary",
        help="layer table of a model",
        description="Print a Keras-style table of a zoo model: layers, output shapes, parameters.",
    )
    summary.add_argument("--model", type=model_name, required=True)
    summary.add_argument(
        "--input-shape",
        type=shape,
        default=(1, 28, 28),
        help="C,H,W of one input (default 1,28,28)",
    )
    summary.add_argument("--num-classes", type=positive(int), default=10)


def run(args) -> int:
    """Run `cnnkit summary`: the layer table of a zoo model."""
    model = models.get(args.model, num_classes=args.num_classes, in_channels=args.input_shape[0])
    print(models.summary(model, args.input_shape))
    return 0
