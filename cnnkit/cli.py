"""The `cnnkit` command: train, evaluate, predict, summary, gradcheck, models, datasets, plot,
explore.

Every user error (unknown name, missing or corrupt file, unusable directory, bad image) ends with
one line on stderr and exit status 2, without a traceback and without touching existing files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from cnnkit import __version__, models
from cnnkit.allocator import keep_freed_memory
from cnnkit.data import DataLoader, DatasetError, describe_datasets, load_dataset
from cnnkit.distributed import Communicator, launched_ranks
from cnnkit.gradcheck import gradcheck
from cnnkit.imagenet import NUM_CLASSES, ImageError, class_names, preprocess
from cnnkit.io import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model_state,
    load_pretrained,
)
from cnnkit.recipe import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, RunError, TrainSettings, run
from cnnkit.train import TrainingDiverged, evaluate, predict_proba
from cnnkit.weights import LAYOUTS, WeightsError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
USER_ERRORS = (RunError, DatasetError, CheckpointError, TrainingDiverged, WeightsError, ImageError)


class UsageError(ValueError):
    """The command line asks for something that cannot be done."""


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr with exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 1,28,28, got {text!r}")
    return shape


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f'expected a JSON object such as {{"width": 0.5}}, got {text!r}'
        )
    return value


def _model_name(text: str) -> str:
    if text not in models.list():
        raise argparse.ArgumentTypeError(
            f"unknown model {text!r}; choose from {', '.join(models.list())}"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = OneLineParser(
        prog="cnnkit",
        description="Convolutional neural networks in readable NumPy: train, evaluate, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True
    defaults = TrainSettings()

    train = commands.add_parser(
        "train",
        help="train a model; with no arguments, a small CNN on the bundled digits",
        description="Train a zoo model on a data set, then report test accuracy. Writes "
        "OUT/checkpoint.npz after every epoch and OUT/metrics.json at the end.",
    )
    train.add_argument(
        "--model",
        type=_model_name,
        default=defaults.model,
        help=f"zoo model (default {defaults.model}); see `cnnkit models`",
    )
    train.add_argument(
        "--dataset",
        default=defaults.dataset,
        help=f"data set (default {defaults.dataset}); see `cnnkit datasets`",
    )
    train.add_argument("--data-dir", help="folder holding the data sets (default $CNNKIT_DATA)")
    train.add_argument(
        "--epochs",
        type=_positive(int),
        default=defaults.epochs,
        help=f"total epochs (default {defaults.epochs})",
    )
    train.add_argument(
        "--batch-size",
        type=_positive(int),
        default=defaults.batch_size,
        help=f"mini-batch size (default {defaults.batch_size})",
    )
    train.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=defaults.optimizer,
        help=f"default {defaults.optimizer}",
    )
    train.add_argument(
        "--lr",
        type=_positive(float),
        default=defaults.lr,
        help=f"peak learning rate (default {defaults.lr})",
    )
    train.add_argument(
        "--momentum",
        type=float,
        default=defaults.momentum,
        help=f"SGD/RMSprop momentum (default {defaults.momentum})",
    )
    train.add_argument(
        "--weight-decay",
        type=float,
        default=defaults.weight_decay,
        help=f"L2 (sgd, adam, rmsprop) or decoupled (adamw) weight decay "
        f"(default {defaults.weight_decay})",
    )
    train.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=defaults.schedule,
        help="per-epoch learning-rate schedule: cosine to zero, step (x0.1 at 1/2 "
        "and 3/4 of training), xception (x0.94 every 2 epochs) or none "
        f"(default {defaults.schedule})",
    )
    train.add_argument(
        "--warmup",
        type=int,
        default=defaults.warmup,
        help="epochs of linear warm-up from lr/10 (default 0)",
    )
    train.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of weights, data order and augmentation (default 0)",
    )
    train.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=defaults.augment,
        help="shift: random translations up to H/14 pixels; crop-flip: padded "
        "random crop and horizontal flip (default none)",
    )
    train.add_argument(
        "--val-split",
        type=float,
        default=defaults.val_split,
        help=f"fraction of the training set held out for validation (default {defaults.val_split})",
    )
    train.add_argument(
        "--patience",
        type=_positive(int),
        help="stop early after this many epochs without a better validation loss",
    )
    train.add_argument(
        "--grad-clip", type=_positive(float), help="clip the global gradient norm to this value"
    )
    train.add_argument(
        "--label-smoothing",
        type=float,
        default=0.0,
        help="cross-entropy label smoothing (default 0)",
    )
    train.add_argument("--out", help="run directory (default runs/MODEL-DATASET-TIME)")
    train.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue the run saved in CHECKPOINT up to --epochs in total",
    )
    train.add_argument(
        "--overwrite", action="store_true", help="allow replacing an earlier run in --out"
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    train.add_argument(
        "--threads",
        type=_positive(int),
        help="BLAS threads for NumPy (default: all cores); 1 is much faster when other jobs "
        "share the CPUs",
    )
    train.add_argument(
        "--distributed",
        action="store_true",
        help="train data-parallel over the ranks of an MPI job (mpirun -np K cnnkit train ...); "
        "on by itself when an MPI launcher starts more than one rank; needs the mpi extra",
    )
    train.add_argument(
        "--sync-bn",
        action="store_true",
        help="with --distributed: batch-norm statistics over the global batch (SyncBatchNorm) "
        "instead of each rank's shard",
    )
    train.add_argument(
        "--plots",
        action="store_true",
        help="at the end, write curves.png, confusion.png and filters.png into OUT (needs the "
        "viz extra)",
    )
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="log scalars, weight/gradient histograms and filters to OUT/tensorboard with "
        "tensorboardX (needs the tensorboard extra)",
    )

    evaluate_cmd = commands.add_parser(
        "evaluate",
        help="test accuracy of a checkpoint",
        description="Evaluate a checkpoint on the test split of its data set (or --dataset).",
    )
    evaluate_cmd.add_argument("--checkpoint", required=True, help="checkpoint.npz of a run")
    evaluate_cmd.add_argument("--dataset", help="data set (default: the one it was trained on)")
    evaluate_cmd.add_argument(
        "--data-dir", help="folder holding the data sets (default $CNNKIT_DATA)"
    )
    evaluate_cmd.add_argument("--batch-size", type=_positive(int), default=256)

    predict = commands.add_parser(
        "predict",
        help="classify image files",
        description="Classify images (files or folders of images) with a checkpoint; images are "
        "converted to the model's channels and resized to its input size. With --weights, an "
        "ImageNet model from a .safetensors/.npz weights file (timm's or Keras' Xception, see "
        "docs/weights.md): images are resized (shorter side) and centre-cropped to the input "
        "size and scaled to [-1, 1] as in Keras' Xception.",
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint.npz of a run")
    source.add_argument("--weights", metavar="FILE", help="ImageNet weights (.safetensors/.npz)")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    predict.add_argument(
        "--top-k",
        type=_positive(int),
        help="how many classes to show per image (default 1; 5 with --weights)",
    )
    predict.add_argument(
        "--model", type=_model_name, help="with --weights: zoo model (default xception)"
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
        type=_json_object,
        default={},
        metavar="JSON",
        help='with --weights: more model options, e.g. \'{"width": 0.5, "input_size": 224}\'',
    )

    summary = commands.add_parser(
        "summary",
        help="layer table of a model",
        description="Print a Keras-style table of a zoo model: layers, output shapes, parameters.",
    )
    summary.add_argument("--model", type=_model_name, required=True)
    summary.add_argument(
        "--input-shape",
        type=_shape,
        default=(1, 28, 28),
        help="C,H,W of one input (default 1,28,28)",
    )
    summary.add_argument("--num-classes", type=_positive(int), default=10)

    check = commands.add_parser(
        "gradcheck",
        help="check a model's backward pass numerically",
        description="Compare a zoo model's backward pass in float64 with central differences "
        "on random input; exit status 1 if the worst relative error exceeds the tolerance.",
    )
    check.add_argument("--model", type=_model_name, default="lenet5")
    check.add_argument(
        "--input-shape",
        type=_shape,
        default=(1, 28, 28),
        help="C,H,W of one input (default 1,28,28)",
    )
    check.add_argument("--batch", type=_positive(int), default=2)
    check.add_argument(
        "--entries",
        type=_positive(int),
        default=20,
        help="random entries checked per array (default 20)",
    )
    check.add_argument("--tolerance", type=_positive(float), default=1e-5)
    check.add_argument("--seed", type=int, default=0)

    commands.add_parser(
        "models",
        help="list the model zoo",
        description="List the zoo models with their parameter counts.",
    )
    commands.add_parser(
        "datasets",
        help="list the data sets",
        description="List the data set names `train --dataset` accepts.",
    )
    from cnnkit.cli_plot import add_plot_parser  # imports this module, so not at the top

    add_plot_parser(commands, OneLineParser)
    from cnnkit.explore import add_arguments as add_explore_arguments

    add_explore_arguments(
        commands.add_parser(
            "explore",
            help="a local web page showing a network at work on one image",
            description="Serve a local web page that shows a network at work on one image: "
            "feature maps, filters, probabilities, saliency, Grad-CAM and the equation of any "
            "conv output value (see docs/explore.md). Needs the explore extra.",
        )
    )
    return parser


def start_distributed() -> Communicator:
    """Join the MPI job, or fail in one line saying what to install."""
    try:
        return Communicator()
    except ImportError as error:
        raise UsageError(str(error)) from None


def command_train(args) -> int:
    if not (args.distributed or launched_ranks() > 1):
        with threadpool_limits(args.threads):
            return train_with_settings(args, communicator=None)
    communicator = start_distributed()
    threads = args.threads or max(1, (os.cpu_count() or 1) // communicator.local_size())
    try:
        with threadpool_limits(threads):
            return train_with_settings(args, communicator)
    except Exception as error:
        if communicator.size == 1:
            raise
        return stop_ranks(communicator, error)


def stop_ranks(communicator: Communicator, error: Exception) -> int:
    """Report an error raised during a distributed run and make sure no rank waits forever.

    An error every rank raised together (a diverged loss, a refused run directory) is reported
    once, by rank 0, and each rank exits with status 2. Any other error may be this rank's alone
    while the others wait in a collective, so it is reported with the rank and the whole job is
    aborted (MPI_Abort).
    """
    if isinstance(error, TrainingDiverged) or getattr(error, "collective", False):
        if communicator.is_root:
            print(f"cnnkit train: error: {error}", file=sys.stderr)
        return 2
    where = f"rank {communicator.rank} of {communicator.size}"
    if isinstance(error, USER_ERRORS):
        print(f"cnnkit train: error: {where}: {error}", file=sys.stderr)
    else:
        print(f"cnnkit train: {where} failed; stopping every rank", file=sys.stderr)
        traceback.print_exc()
    sys.stderr.flush()
    communicator.abort(2)
    return 2


def train_with_settings(args, communicator: Communicator | None) -> int:
    settings = TrainSettings(
        model=args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup=args.warmup,
        seed=args.seed,
        augment=args.augment,
        val_split=args.val_split,
        patience=args.patience,
        grad_clip=args.grad_clip,
        label_smoothing=args.label_smoothing,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        plots=args.plots,
        tensorboard=args.tensorboard,
        distributed=communicator is not None,
        sync_batch_norm=args.sync_bn,
    )
    metrics = run(settings)
    if communicator is not None and not communicator.is_root:
        return 0
    print(
        f"test accuracy {metrics['test_accuracy']:.4f} (loss {metrics['test_loss']:.4f}, "
        f"top-5 {metrics['test_top5_accuracy']:.4f}) after {metrics['epochs']} epochs in "
        f"{metrics['elapsed_seconds']:.1f} s; run saved in {metrics['out']}"
    )
    for path in metrics.get("plots", []):
        print(f"wrote {path}")
    return 0


def restore_model(path: str) -> tuple[object, Checkpoint, dict]:
    """Rebuild the model of a checkpoint and return it with the checkpoint and its data info."""
    checkpoint = load_checkpoint(path)
    config = dict(checkpoint.config)
    if config.get("name") not in models.list():
        raise CheckpointError(f"checkpoint {path} names unknown model {config.get('name')!r}")
    model = models.get(**config)
    load_model_state(model, checkpoint, source=f"checkpoint {path}")
    data = checkpoint.training_state.get("metadata", {}).get("data")
    if data is None:
        raise CheckpointError(
            f"checkpoint {path} has no data metadata (not written by `cnnkit train`)"
        )
    model.eval()
    return model, checkpoint, data


def normalize(images: np.ndarray, data: dict) -> np.ndarray:
    """Apply the training run's per-channel normalisation to float images in [0, 1]."""
    mean = np.asarray(data["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(data["std"], np.float32).reshape(1, -1, 1, 1)
    return (images - mean) / std


def load_test_split(dataset: str, data_dir: str | None, data: dict, checkpoint: str):
    """The test split of ``dataset``, refused unless its images fit the checkpoint's model."""
    test = load_dataset(dataset, data_dir).test
    if list(test.image_shape) != list(data["image_shape"]):
        raise UsageError(
            f"data set {dataset!r} has images of shape {test.image_shape}, but the model in "
            f"{checkpoint} expects {tuple(data['image_shape'])}"
        )
    return test


def command_evaluate(args) -> int:
    model, _, data = restore_model(args.checkpoint)
    dataset = args.dataset or data["dataset"]
    test = load_test_split(dataset, args.data_dir, data, args.checkpoint)
    loader = DataLoader(
        test.images,
        test.labels,
        args.batch_size,
        seed=0,
        transform=lambda x, rng: normalize(x, data),
    )
    result = evaluate(model, loader, num_classes=len(data["class_names"]))
    print(
        f"{dataset} test: accuracy {result['accuracy']:.4f}, top-5 {result['top5_accuracy']:.4f}, "
        f"loss {result['loss']:.4f} on {len(test)} images"
    )
    return 0


def image_files(paths: list[str]) -> list[Path]:
    """The image files named, with folders expanded to the images inside them (sorted)."""
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(
                    f"folder {path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"image {path} does not exist")
    return files


def read_image(path: Path, shape: list[int]) -> np.ndarray:
    """Read one image as float32 (C, H, W) in [0, 1], converted and resized to ``shape``."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    if channels not in (1, 3):
        raise UsageError(f"predict supports models with 1 or 3 input channels, got {channels}")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((width, height))
            pixels = np.asarray(image, dtype=np.float32) / 255
    except (UnidentifiedImageError, OSError) as error:
        raise UsageError(f"cannot read image {path}: {error}") from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def command_predict(args) -> int:
    if args.weights is not None:
        return predict_with_weights(args)
    if args.model or args.flavor or args.model_options or args.layout != "auto":
        raise UsageError("--model, --layout, --flavor and --model-options go with --weights")
    model, _, data = restore_model(args.checkpoint)
    files = image_files(args.images)
    images = np.stack([read_image(path, data["image_shape"]) for path in files])
    probabilities = predict_proba(model, normalize(images, data))
    print_ranked(files, probabilities, data["class_names"], args.top_k or 1)
    return 0


def predict_with_weights(args) -> int:
    """`predict --weights`: ImageNet classes (top 5) from another framework's weights."""
    options = dict(args.model_options)
    if args.flavor:
        options["flavor"] = args.flavor
    model, _ = load_pretrained(args.model or "xception", args.weights, args.layout, **options)
    files = image_files(args.images)
    channels, height, width = model.default_input_shape
    images = np.stack([preprocess(path, (height, width), channels) for path in files])
    probabilities = predict_proba(model, images)
    count = probabilities.shape[1]
    names = class_names() if count == NUM_CLASSES else [f"class {i}" for i in range(count)]
    print_ranked(files, probabilities, names, args.top_k or 5)
    return 0


def print_ranked(files, probabilities, names, top_k: int) -> None:
    """One line per image: its ``top_k`` classes with their probabilities."""
    k = min(top_k, len(names))
    for path, row in zip(files, probabilities, strict=True):
        best = np.argsort(-row, kind="stable")[:k]
        ranked = ", ".join(f"{names[i]} {row[i]:.3f}" for i in best)
        print(f"{path}: {ranked}")


def command_summary(args) -> int:
    model = models.get(args.model, num_classes=args.num_classes, in_channels=args.input_shape[0])
    print(models.summary(model, args.input_shape))
    return 0


def command_gradcheck(args) -> int:
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


def command_models(args) -> int:
    for name in models.list():
        model = models.get(name, num_classes=10, in_channels=1)
        print(f"{name:16s} {model.num_parameters():>12,d} parameters (10 classes, 1 channel)")
    return 0


def command_datasets(args) -> int:
    for name, text in describe_datasets().items():
        print(f"{name:16s} {text}")
    return 0


def command_plot(args) -> int:
    from cnnkit.cli_plot import command_plot as plot  # see cnnkit/cli_plot.py

    return plot(args)


def command_explore(args) -> int:
    from cnnkit.explore import command  # see cnnkit/explore/

    return command(args)


COMMANDS = {
    "train": command_train,
    "evaluate": command_evaluate,
    "predict": command_predict,
    "summary": command_summary,
    "gradcheck": command_gradcheck,
    "models": command_models,
    "datasets": command_datasets,
    "plot": command_plot,
    "explore": command_explore,
}


def main(argv: list[str] | None = None) -> int:
    """Run the `cnnkit` command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        return COMMANDS[args.command](args)
    except (UsageError, *USER_ERRORS) as error:
        print(f"cnnkit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnkit {args.command}: interrupted", file=sys.stderr)
        return 130
