"""`cnnkit plot KIND ...`: the pictures of cnnkit.viz from the command line, one PNG (+ SVG) each.

Run-directory plots (curves, confusion) read OUT/metrics.json and are written into that run
directory by default; checkpoint plots (filters, features, saliency, gradcam, misclassified) are
written into the current directory by default. ``--out FILE`` chooses the file, ``--svg`` adds an
SVG beside the PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cnnkit import viz
from cnnkit.cli.checkpoint import load_test_split, normalize, restore_model
from cnnkit.cli.errors import UsageError
from cnnkit.cli.images import read_image
from cnnkit.cli.onnx_model import restore_onnx
from cnnkit.cli.options import FILE, FOLDER, NON_NEGATIVE, POSITIVE, OneLineParser, text
from cnnkit.data import to_float_nchw

LAYER = text("a layer name")
PLOT_KINDS = ("curves", "filters", "features", "confusion", "saliency", "gradcam", "misclassified")


def add_parser(commands) -> None:
    """Add `cnnkit plot` and its sub-commands (one per kind) to the sub-parsers ``commands``."""
    plot = commands.add_parser(
        "plot",
        help="draw training curves, filters, feature maps, confusion, saliency, Grad-CAM",
        description="Draw one picture of a run or a checkpoint as PNG (and SVG with --svg); "
        "needs matplotlib (pip install 'cnnkit[viz]'). `cnnkit plot KIND --help` for each kind.",
    )
    kinds = plot.add_subparsers(dest="plot_kind", metavar="KIND", parser_class=OneLineParser)
    kinds.required = True

    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "--out", type=FILE, metavar="FILE", help="PNG file to write (see the default above)"
    )
    output.add_argument("--svg", action="store_true", help="also write an SVG beside the PNG")

    checkpoint = argparse.ArgumentParser(add_help=False)
    model_source = checkpoint.add_mutually_exclusive_group(required=True)
    model_source.add_argument("--checkpoint", type=FILE, help="checkpoint.npz of a run")
    model_source.add_argument(
        "--onnx", type=FILE, metavar="FILE", help="an ONNX model instead (needs the onnx extra)"
    )

    image = argparse.ArgumentParser(add_help=False)
    image.add_argument(
        "image",
        nargs="?",
        type=FILE,
        metavar="IMAGE",
        help="image file (converted and resized to the model's input)",
    )
    image.add_argument(
        "--test-index",
        type=NON_NEGATIVE,
        metavar="N",
        help="use image N of the checkpoint's test split instead of an image file",
    )
    image.add_argument(
        "--data-dir", type=FOLDER, help="folder holding the data sets (for --test-index)"
    )

    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "--class",
        dest="target_class",
        type=text("a class name or index"),
        metavar="K",
        help="class to explain, by name or index (default: the predicted class)",
    )

    curves = kinds.add_parser(
        "curves",
        parents=[output],
        help="loss, accuracy and learning rate per epoch",
        description="Loss and accuracy per epoch (train vs validation) with the learning rate "
        "on a secondary axis, from a run's metrics.json. Default output: RUN_DIR/curves.png.",
    )
    curves.add_argument("run", type=FILE, metavar="RUN", help="run directory or its metrics.json")

    confusion = kinds.add_parser(
        "confusion",
        parents=[output],
        help="test confusion matrix of a run",
        description="The test-set confusion matrix of a run, with class names. Default output: "
        "RUN_DIR/confusion.png (confusion-normalized.png with --normalize).",
    )
    confusion.add_argument(
        "run", type=FILE, metavar="RUN", help="run directory or its metrics.json"
    )
    confusion.add_argument(
        "--normalize", action="store_true", help="divide each row by its true-class total"
    )

    filters = kinds.add_parser(
        "filters",
        parents=[checkpoint, output],
        help="a conv layer's filters as an image grid",
        description="The filters of a conv layer (default: the first) as an image grid, in "
        "colour for RGB inputs. Default output: ./filters-LAYER.png.",
    )
    filters.add_argument(
        "--layer", type=LAYER, help="conv layer name (default: the first conv layer)"
    )
    filters.add_argument(
        "--max-filters", type=POSITIVE, default=64, help="show at most this many (default 64)"
    )

    features = kinds.add_parser(
        "features",
        parents=[checkpoint, image, output],
        help="a layer's feature maps for one image",
        description="The activations of a layer for one input image. Default output: "
        "./features-LAYER-IMAGE.png.",
    )
    features.add_argument("--layer", type=LAYER, required=True, help="layer name, e.g. features.3")
    features.add_argument(
        "--max-maps", type=POSITIVE, default=64, help="show at most this many channels (default 64)"
    )

    kinds.add_parser(
        "saliency",
        parents=[checkpoint, image, target, output],
        help="saliency map: |d class score / d pixel|",
        description="Saliency map (Simonyan et al. 2014): max over channels of |dS/dx|, the "
        "gradient of the class logit with respect to the (normalised) input pixels. Default "
        "output: ./saliency-IMAGE.png.",
    )

    gradcam = kinds.add_parser(
        "gradcam",
        parents=[checkpoint, image, target, output],
        help="Grad-CAM class activation map at a conv layer",
        description="Grad-CAM (Selvaraju et al. 2017) at a conv layer: ReLU(sum_k w_k A_k) with "
        "w_k the spatial mean of dS/dA_k. Default output: ./gradcam-LAYER-IMAGE.png.",
    )
    gradcam.add_argument(
        "--layer", type=LAYER, help="conv layer name (default: the last conv layer)"
    )

    wrong = kinds.add_parser(
        "misclassified",
        parents=[checkpoint, output],
        help="grid of misclassified test images",
        description="Test images the checkpoint gets wrong, with true and predicted labels, most "
        "confident mistakes first. Default output: ./misclassified.png.",
    )
    wrong.add_argument(
        "--dataset",
        type=text("a data set name"),
        help="data set (default: the one it was trained on)",
    )
    wrong.add_argument(
        "--data-dir", type=FOLDER, help="folder holding the data sets (default $CNNKIT_DATA)"
    )
    wrong.add_argument(
        "--max-images", type=POSITIVE, default=36, help="show at most this many (default 36)"
    )


def _run_dir(source: str) -> Path:
    path = Path(source)
    return path if path.is_dir() else path.parent


def check(args) -> None:
    """The checks of options taken together, before any file is read."""
    if not hasattr(args, "test_index"):
        return
    if (args.image is None) == (args.test_index is None):
        raise UsageError("give exactly one of IMAGE and --test-index N")
    if args.data_dir is not None and args.test_index is None:
        raise UsageError(
            f"argument --data-dir: goes with --test-index (the test split), got it with the "
            f"image {args.image}"
        )


def _restore(args) -> tuple[object, dict]:
    """(model in eval mode, data description) of --checkpoint or --onnx."""
    if args.onnx is not None:
        return restore_onnx(args.onnx)
    model, _, data = restore_model(args.checkpoint)
    return model, data


def _test_split(args, data: dict, dataset: str | None = None):
    """The test split of ``dataset`` (default: the model's own) for --test-index or
    misclassified, refused for an ONNX model that records no data set."""
    dataset = dataset or data["dataset"]
    if dataset is None:
        raise UsageError(
            f"the ONNX model {args.onnx} records no data set (only files written by `cnnkit "
            "export` do): give an image file, or --dataset for misclassified"
        )
    return load_test_split(dataset, args.data_dir, data, args.checkpoint or args.onnx)


def _input_image(args, data: dict) -> tuple[np.ndarray, str]:
    """(pixels (C, H, W) in [0, 1], short name) from IMAGE or --test-index."""
    if args.image is not None:
        path = Path(args.image)
        if not path.is_file():
            raise UsageError(f"image {path} does not exist")
        return read_image(path, data["image_shape"], data.get("crop", False)), path.stem
    test = _test_split(args, data)
    if not 0 <= args.test_index < len(test):
        raise UsageError(
            f"--test-index {args.test_index} is out of range: the {data['dataset']} test split "
            f"has {len(test)} images"
        )
    pixels = to_float_nchw(test.images[args.test_index : args.test_index + 1])[0]
    return pixels, f"test{args.test_index}"


def _target_class(text: str | None, class_names: list[str]) -> int | None:
    if text is None:
        return None
    if text in class_names:
        return class_names.index(text)
    try:
        index = int(text)
    except ValueError:
        index = -1
    if not 0 <= index < len(class_names):
        raise UsageError(
            f"unknown class {text!r}; expected a name ({', '.join(class_names[:10])}"
            f"{', ...' if len(class_names) > 10 else ''}) or an index 0..{len(class_names) - 1}"
        )
    return index


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _plot(args) -> list[Path]:
    kind, out, svg = args.plot_kind, args.out, args.svg
    if kind == "curves":
        return viz.plot_curves(
            viz.load_metrics(args.run), out or _run_dir(args.run) / "curves.png", svg
        )
    if kind == "confusion":
        name = "confusion-normalized.png" if args.normalize else "confusion.png"
        return viz.plot_confusion_matrix(
            viz.load_metrics(args.run),
            out or _run_dir(args.run) / name,
            normalize=args.normalize,
            svg=svg,
        )
    model, data = _restore(args)
    names = list(data["class_names"])
    if kind == "filters":
        layer = args.layer or viz.first_conv_name(model)
        weights = viz.filters(model, layer)
        return viz.plot_filters(
            weights, out or f"filters-{_safe(layer)}.png", layer, args.max_filters, svg
        )
    if kind == "misclassified":
        test = _test_split(args, data, args.dataset)
        pixels = to_float_nchw(test.images)
        return viz.plot_misclassified(
            model,
            normalize(pixels, data),
            test.labels,
            out or "misclassified.png",
            names,
            display=pixels,
            max_images=args.max_images,
            svg=svg,
        )
    layer = getattr(args, "layer", None)
    if kind == "gradcam" and layer is None:
        layer = viz.conv_layer_names(model)[-1] if viz.conv_layer_names(model) else ""
    if layer is not None:
        viz.get_layer(model, layer)  # an unknown name fails before any image is read
    pixels, stem = _input_image(args, data)
    x = normalize(pixels[None], data)[0]
    if kind == "features":
        path = out or f"features-{_safe(layer)}-{_safe(stem)}.png"
        return viz.plot_feature_maps(model, x, layer, path, pixels, args.max_maps, svg)
    target = _target_class(args.target_class, names)
    if kind == "saliency":
        path = out or f"saliency-{_safe(stem)}.png"
        return viz.plot_saliency(model, x, path, target, names, pixels, svg)
    path = out or f"gradcam-{_safe(layer)}-{_safe(stem)}.png"
    return viz.plot_grad_cam(model, x, layer, path, target, names, pixels, svg)


def run(args) -> int:
    """Run `cnnkit plot KIND`; print the written files, one per line."""
    check(args)
    try:
        written = _plot(args)
    except (viz.VizError, viz.MissingDependency) as error:
        raise UsageError(str(error)) from None
    for path in written:
        print(f"wrote {path}")
    return 0
