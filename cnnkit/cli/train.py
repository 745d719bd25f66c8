"""`cnnkit train`: train a zoo model on a data set, on one process or the ranks of an MPI job."""

from __future__ import annotations

import os
import sys
import traceback

from threadpoolctl import threadpool_limits

from cnnkit.cli.errors import USER_ERRORS, UsageError
from cnnkit.cli.options import model_name, positive
from cnnkit.distributed import Communicator, launched_ranks
from cnnkit.recipe import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, TrainSettings
from cnnkit.recipe import run as run_training
from cnnkit.train import TrainingDiverged


def add_parser(commands) -> None:
    """Add `cnnkit train` to the sub-parsers ``commands``."""
    defaults = TrainSettings()
    train = commands.add_parser(
        "train",
        help="train a model; with no arguments, a small CNN on the bundled digits",
        description="Train a zoo model on a data set, then report test accuracy. Writes "
        "OUT/checkpoint.npz after every epoch and OUT/metrics.json at the end.",
    )
    train.add_argument(
        "--model",
        type=model_name,
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
        type=positive(int),
        default=defaults.epochs,
        help=f"total epochs (default {defaults.epochs})",
    )
    train.add_argument(
        "--batch-size",
        type=positive(int),
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
        type=positive(float),
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
        type=positive(int),
        help="stop early after this many epochs without a better validation loss",
    )
    train.add_argument(
        "--grad-clip", type=positive(float), help="clip the global gradient norm to this value"
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
        type=positive(int),
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


def start_distributed() -> Communicator:
    """Join the MPI job, or fail in one line saying what to install."""
    try:
        return Communicator()
    except ImportError as error:
        raise UsageError(str(error)) from None


def run(args) -> int:
    """Run `cnnkit train`."""
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
    metrics = run_training(settings)
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
