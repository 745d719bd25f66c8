"""`cnnkit export`: a run's checkpoint written as an ONNX model (cnnkit.onnx.export)."""

from __future__ import annotations

from pathlib import Path

from cnnkit.cli.checkpoint import DATA_KEYS, restore_model
from cnnkit.cli.errors import UsageError
from cnnkit.cli.onnx_model import onnx_package
from cnnkit.cli.options import FILE, integer

OPSETS = (13, 21)
"""The opsets cnnkit writes: 13 (the first with Squeeze/Unsqueeze axes as inputs) to 21."""


def add_parser(commands) -> None:
    """Add `cnnkit export` to the sub-parsers ``commands``."""
    export = commands.add_parser(
        "export",
        help="write a checkpoint's model as an ONNX file",
        description="Write the model of a `cnnkit train` checkpoint as an ONNX model for other "
        "runtimes (onnxruntime, OpenCV, TensorRT, ...), with a dynamic batch size; the run's "
        "data set, class names and normalisation go into the file's metadata, so `cnnkit "
        "predict --onnx` prepares images as training did. Needs the onnx extra.",
    )
    export.add_argument("--checkpoint", type=FILE, required=True, help="checkpoint.npz of a run")
    export.add_argument(
        "--onnx", type=FILE, required=True, metavar="OUT", help="ONNX file to write"
    )
    export.add_argument(
        "--opset",
        type=integer(*OPSETS),
        default=17,
        help=f"ONNX opset to write, {OPSETS[0]}..{OPSETS[1]} (default 17; GELU needs 20)",
    )
    export.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it exists (default: refuse)"
    )


def run(args) -> int:
    """Run `cnnkit export`: check, trace and write the ONNX file atomically."""
    out = Path(args.onnx)
    if out.is_dir():
        raise UsageError(f"argument --onnx: {out} is a folder, expected a file name")
    if out.exists() and not args.overwrite:
        raise UsageError(f"argument --onnx: {out} exists; give --overwrite to replace it")
    package = onnx_package()
    model, _, data = restore_model(args.checkpoint)
    description = {key: data[key] for key in DATA_KEYS}
    package.export(
        model, out, input_shape=tuple(data["image_shape"]), opset=args.opset, data=description
    )
    print(f"wrote {out}")
    return 0
