"""`cnnkit predict`: classify image files with a checkpoint, ImageNet weights or an ONNX model."""

from __future__ import annotations

import numpy as np

from cnnkit.cli.checkpoint import normalize, restore_model
from cnnkit.cli.errors import UsageError
from cnnkit.cli.images import image_files, open_image, pixels, read_image
from cnnkit.cli.onnx_model import restore_onnx
from cnnkit.cli.options import FILE, POSITIVE, json_object, model_name, shape, text
from cnnkit.imagenet import center_crop_resize, class_names_for
from cnnkit.io import load_pretrained
from cnnkit.train import predict_proba
from cnnkit.weights import LAYOUTS


def add_parser(commands) -> None:
    """Add `cnnkit predict` to the sub-parsers ``commands``."""
    predict = commands.add_parser(
        "predict",
        help="classify image files",
        description="Classify images (files or folders of images) with a checkpoint; images are "
        "converted to the model's channels and resized to its input size. With --weights, an "
        "ImageNet model from a .safetensors/.npz weights file (timm's or Keras' Xception, see "
        "docs/weights.md): images are resized (shorter side) and centre-cropped to the input "
        "size and scaled to [-1, 1] as in Keras' Xception. Animated images are read as their "
        "first frame; 16-bit grey, CMYK and palette images are converted; empty files, "
        "images over 4x smaller than the input and decompression bombs (Pillow's "
        "Image.MAX_IMAGE_PIXELS) are refused. With --onnx, an ONNX model: a file written by "
        "`cnnkit export` prepares images as its training run did; any other is given "
        "torchvision's ImageNet preprocessing (3 channels: shorter side resized, centre crop, "
        "ImageNet mean and std) or pixels in [0, 1] (other channel counts).",
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=FILE, help="checkpoint.npz of a run")
    source.add_argument(
        "--weights", type=FILE, metavar="FILE", help="ImageNet weights (.safetensors/.npz)"
    )
    source.add_argument(
        "--onnx", type=FILE, metavar="FILE", help="ONNX model file (needs the onnx extra)"
    )
    predict.add_argument(
        "images",
        nargs="+",
        type=text("an image file or folder"),
        metavar="IMAGE",
        help="image files or folders",
    )
    predict.add_argument(
        "--top-k",
        type=POSITIVE,
        help="how many classes to show per image (default 1; 5 with --weights)",
    )
    predict.add_argument(
        "--model", type=model_name, help="with --weights: zoo model (default xception)"
    )
    predict.add_argument(
        "--layout",
        choices=("auto", *LAYOUTS),
        default="auto",
        help="with --weights: the file's names (default auto: guessed from them)",
    )
    predict.add_argument(
        "--flavor",
        choices=("keras", "timm"),
        help="with --weights: Xception preset (default: the layout's framework)",
    )
    predict.add_argument(
        "--model-options",
        type=json_object,
        default={},
        metavar="JSON",
        help='with --weights: more model options, e.g. \'{"width": 0.5, "input_size": 224}\'',
    )
    predict.add_argument(
        "--input-shape",
        type=shape,
        help="with --onnx: C,H,W of the model's input (default: its declared shape)",
    )


def run(args) -> int:
    """Run `cnnkit predict`: the classes of image files, one line per image."""
    if args.input_shape is not None and args.onnx is None:
        raise UsageError("argument --input-shape: goes with --onnx")
    if args.weights is not None:
        return predict_with_weights(args)
    if args.model or args.flavor or args.model_options or args.layout != "auto":
        raise UsageError("--model, --layout, --flavor and --model-options go with --weights")
    if args.onnx is not None:
        return predict_with_onnx(args)
    files = image_files(args.images)
    model, _, data = restore_model(args.checkpoint)
    images = np.stack([read_image(path, data["image_shape"]) for path in files])
    probabilities = predict_proba(model, normalize(images, data))
    print_ranked(files, probabilities, data["class_names"], args.top_k or 1)
    return 0


def predict_with_weights(args) -> int:
    """`predict --weights`: ImageNet classes (top 5) from another framework's weights."""
    options = dict(args.model_options)
    if args.flavor:
        options["flavor"] = args.flavor
    files = image_files(args.images)
    model, _ = load_pretrained(args.model or "xception", args.weights, args.layout, **options)
    channels, size = model.default_input_shape[0], model.default_input_shape[1:]
    images = np.stack([keras_input(path, channels, size) for path in files])
    probabilities = predict_proba(model, images)
    names = class_names_for(probabilities.shape[1])
    print_ranked(files, probabilities, names, args.top_k or 5)
    return 0


def predict_with_onnx(args) -> int:
    """`predict --onnx`: the classes of an ONNX model, images prepared as its file describes
    (cnnkit.onnx.inputs)."""
    from cnnkit.onnx.inputs import gives_probabilities

    files = image_files(args.images)
    model, data = restore_onnx(args.onnx, args.input_shape)
    shape = data["image_shape"]
    images = np.stack([read_image(path, shape, data["crop"]) for path in files])
    images = normalize(images, data)
    outputs = "probabilities" if gives_probabilities(model) else "logits"
    probabilities = predict_proba(model, images, outputs=outputs)
    names = data["class_names"]
    if probabilities.shape[1] != len(names):
        raise UsageError(
            f"the ONNX model gives {probabilities.shape[1]} scores, but its file names "
            f"{len(names)} classes"
        )
    print_ranked(files, probabilities, names, args.top_k or (5 if len(names) > 10 else 1))
    return 0


def keras_input(path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """An image as Keras' Xception takes it (as cnnkit.imagenet.preprocess, read safely):
    shorter side resized to ``size``, centre crop, pixels scaled to [-1, 1]."""
    image = center_crop_resize(open_image(path, channels, size), size)
    return pixels(image, channels) / np.float32(127.5) - np.float32(1)


def print_ranked(files, probabilities, names, top_k: int) -> None:
    """One line per image: its ``top_k`` classes with their probabilities."""
    k = min(top_k, len(names))
    for path, row in zip(files, probabilities, strict=True):
        best = np.argsort(-row, kind="stable")[:k]
        ranked = ", ".join(f"{names[i]} {row[i]:.3f}" for i in best)
        print(f"{path}: {ranked}")
