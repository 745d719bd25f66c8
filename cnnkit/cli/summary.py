"""`cnnkit summary`: the Keras-style layer table of a zoo model."""

from __future__ import annotations

from cnnkit import models
from cnnkit.cli.errors import UsageError
from cnnkit.cli.options import MAX_CLASSES, integer, model_name, shape


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


def build_model(name: str, input_shape: tuple[int, int, int], **options):
    """Zoo model ``name`` for inputs of ``input_shape``, refused (naming --input-shape) when its
    layers cannot take that shape; the shapes are traced without computing (models.trace)."""
    channels, height, width = input_shape
    if models.takes_option(name, "input_size"):
        options.setdefault("input_size", [height, width])
    shown = ",".join(str(v) for v in input_shape)
    try:
        model = models.get(name, in_channels=channels, **options)
        models.trace(model, input_shape)
    except (ValueError, TypeError) as error:
        raise UsageError(f"argument --input-shape: {name} cannot take {shown}: {error}") from None
    return model
