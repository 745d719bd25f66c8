"""`cnnkit summary`: the Keras-style layer table of a zoo model or of an ONNX model."""

from __future__ import annotations

from cnnkit import models
from cnnkit.cli.errors import UsageError
from cnnkit.cli.onnx_model import onnx_and_shape
from cnnkit.cli.options import FILE, MAX_CLASSES, integer, model_name, shape
from cnnkit.cli.zoo import build_model

DEFAULT_INPUT_SHAPE = (1, 28, 28)


def add_parser(commands) -> None:
    """Add `cnnkit summary` to the sub-parsers ``commands``."""
    summary = commands.add_parser(
        "summary",
        help="layer table of a model",
        description="Print a Keras-style table of a zoo model or of an ONNX model imported on "
        "cnnkit layers: layers, output shapes, parameters.",
    )
    source = summary.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=model_name, help="zoo model")
    source.add_argument(
        "--onnx", type=FILE, metavar="FILE", help="ONNX model file (needs the onnx extra)"
    )
    summary.add_argument(
        "--input-shape",
        type=shape,
        help="C,H,W of one input, which the model must be able to take (default 1,28,28 for "
        "a zoo model, the declared input shape for an ONNX model)",
    )
    summary.add_argument(
        "--num-classes",
        type=integer(1, MAX_CLASSES),
        help="outputs of a zoo model's classifier (default 10)",
    )


def run(args) -> int:
    """Run `cnnkit summary`: the layer table of a zoo model or an ONNX model."""
    if args.onnx is not None:
        if args.num_classes is not None:
            raise UsageError(
                "argument --num-classes: goes with --model (an ONNX model has its own)"
            )
        model, input_shape = onnx_and_shape(args.onnx, args.input_shape)
        print(models.summary(model, input_shape))
        return 0
    input_shape = args.input_shape or DEFAULT_INPUT_SHAPE
    model = build_model(args.model, input_shape, num_classes=args.num_classes or 10)
    print(models.summary(model, input_shape))
    return 0
