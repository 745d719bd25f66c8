"""`cnnkit summary`: the Keras-style layer table of a zoo model."""

from __future__ import annotations

from cnnkit import models
from cnnkit.cli.options import MAX_CLASSES, integer, model_name, shape
from cnnkit.cli.zoo import build_model


def add_parser(commands) -> None:
    """Add `cnnkit summary` to the sub-parsers ``commands``."""
    summary = commands.add_parser(
        "summary",
        help="layer table of a model",
        description="Print a Keras-style table of a zoo model: layers, output shapes, parameters.",
    )
    summary.add_argument("--model", type=model_name, required=True, help="zoo model")
    summary.add_argument(
        "--input-shape",
        type=shape,
        default=(1, 28, 28),
        help="C,H,W of one input, which the model must be able to take (default 1,28,28)",
    )
    summary.add_argument(
        "--num-classes",
        type=integer(1, MAX_CLASSES),
        default=10,
        help="outputs of the classifier (default 10)",
    )


def run(args) -> int:
    """Run `cnnkit summary`: the layer table of a zoo model."""
    model = build_model(args.model, args.input_shape, num_classes=args.num_classes)
    print(models.summary(model, args.input_shape))
    return 0
