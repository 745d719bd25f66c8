"""`cnnkit train`: train a zoo model on a data set, on one process or the ranks of an MPI job.

Options are checked when parsed (:mod:`cnnkit.cli.options`) and together by :func:`check`; an
interrupted run prints the exact command that resumes it (:func:`resume_command`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import traceback

from threadpoolctl import threadpool_limits

from cnnkit.cli.errors import UsageError, is_user_error
from cnnkit.cli.options import (
    C_INT_MAX,
    FILE,
    FOLDER,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    integer,
    model_name,
    number,
    text,
)
from cnnkit.distributed import Communicator, launched_ranks
from cnnkit.recipe import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, TrainSettings, output_path
from cnnkit.recipe import run as run_training
from cnnkit.rundir import CHECKPOINT_NAME
from cnnkit.train import TrainingDiverged, TrainingInterrupted

MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")
# Options that resume_command sets itself, and the parser kept for it.
NOT_REPEATED = {"out", "resume", "overwrite", "parser", "command", "help"}


def _defaulted_option(parser, defaults: TrainSettings):
    """``option(flag, kind, what, after="")``: add ``flag`` to ``parser`` parsed by ``kind``,
    its default the TrainSettings field of the same name, its help "WHAT (default VALUE)AFTER"."""

    def option(flag: str, kind, what: str, after: str = "") -> None:
        default = getattr(defaults, flag[2:].replace("-", "_"))
        parser.add_argument(
            flag, type=kind, default=default, help=f"{what} (default {default}){after}"
        )

    return option


def add_parser(commands) -> None:
    """Add `cnnkit train` to the sub-parsers ``commands``."""
    defaults = TrainSettings()
    train = commands.add_parser(
        "train",
        help="train a model; with no arguments, a small CNN on the bundled digits",
        description="Train a zoo model on a data set, then report test accuracy. Writes "
        "OUT/checkpoint.npz after every epoch and OUT/metrics.json at the end. Ctrl-C or SIGTERM "
        "stop at the next step with a checkpoint of that point and print the command that "
        "resumes it; a second one stops at once.",
    )
    train.set_defaults(parser=train)
    option = _defaulted_option(train, defaults)
    option("--model", model_name, "zoo model", "; see `cnnkit models`")
    option("--dataset", text("a data set name"), "data set", "; see `cnnkit datasets`")
    train.add_argument(
        "--data-dir", type=FOLDER, help="folder holding the data sets (default $CNNKIT_DATA)"
    )
    option("--epochs", POSITIVE, "total epochs")
    option("--batch-size", POSITIVE, "mini-batch size")
    train.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=defaults.optimizer,
        help=f"default {defaults.optimizer}",
    )
    option("--lr", number(0, low_open=True), "peak learning rate")
    train.add_argument(
        "--momentum",
        type=number(0, 1, high_open=True),
        help=f"momentum of sgd (Nesterov) and rmsprop, in [0, 1) (default {defaults.momentum}); "
        "adam and adamw have none",
    )
    train.add_argument(
        "--weight-decay",
        type=number(0),
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
        type=NON_NEGATIVE,
        default=defaults.warmup,
        help="epochs of linear warm-up from lr/10, fewer than --epochs (default 0)",
    )
    train.add_argument(
        "--seed",
        type=SEED,
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
        type=number(0, 1, high_open=True),
        default=defaults.val_split,
        help="fraction of the training set held out for validation, in [0, 1) "
        f"(default {defaults.val_split})",
    )
    train.add_argument(
        "--limit",
        type=POSITIVE,
        metavar="N",
        help="use only the first N images of the training and of the test split (quick trials)",
    )
    train.add_argument(
        "--patience",
        type=POSITIVE,
        help="stop early after this many epochs without a better validation loss (needs "
        "--val-split > 0)",
    )
    train.add_argument(
        "--grad-clip",
        type=number(0, low_open=True),
        help="clip the global gradient norm to this value",
    )
    train.add_argument(
        "--label-smoothing",
        type=number(0, 1),
        default=defaults.label_smoothing,
        help="cross-entropy label smoothing, in [0, 1] (default 0)",
    )
    train.add_argument(
        "--out",
        type=FOLDER,
        help="run directory, empty or a run's own (default runs/MODEL-DATASET-TIME); locked "
        "while the run lasts",
    )
    train.add_argument(
        "--resume",
        type=FILE,
        metavar="CHECKPOINT",
        help="continue the run saved in CHECKPOINT up to --epochs in total",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="allow replacing an earlier run in --out, or writing into a folder of other files",
    )
    train.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bars (shown only when stderr is a terminal)",
    )
    train.add_argument(
        "--threads",
        type=integer(1, C_INT_MAX),
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
        "--explore",
        action="store_true",
        help="serve `cnnkit explore` on this run at 127.0.0.1 while it trains (the weights of "
        "each checkpoint, the curves so far), and after it until Ctrl-C",
    )
    train.add_argument(
        "--explore-port",
        type=integer(0, 65535),
        default=8000,
        help="with --explore: the port (default 8000; 0: any free one)",
    )
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="log scalars, weight/gradient histograms and filters to OUT/tensorboard with "
        "tensorboardX (needs the tensorboard extra)",
    )


def check(args) -> None:
    """The checks of options taken together; each error names the option and the value."""
    if args.momentum is not None and args.optimizer not in MOMENTUM_OPTIMIZERS:
        raise UsageError(
            f"argument --momentum: {args.optimizer} has no momentum, got --momentum "
            f"{args.momentum:g}; it applies to --optimizer {' or '.join(MOMENTUM_OPTIMIZERS)}"
        )
    if args.warmup >= args.epochs and args.warmup > 0:
        raise UsageError(
            f"argument --warmup: expected fewer epochs than the run (--epochs {args.epochs}), "
            f"got {args.warmup}"
        )
    if args.patience is not None and args.val_split == 0:
        raise UsageError(
            f"argument --patience: early stopping watches the validation loss, but --val-split "
            f"is 0; expected --val-split > 0 with --patience {args.patience}"
        )
    if args.explore_port != 8000 and not args.explore:
        raise UsageError(f"argument --explore-port: goes with --explore, got {args.explore_port}")
    if args.explore and (args.distributed or launched_ranks() > 1):
        raise UsageError("argument --explore: serves one process's run, not with --distributed")
    if args.sync_bn and not (args.distributed or launched_ranks() > 1):
        raise UsageError("argument --sync-bn: expected --distributed (or an MPI launcher) with it")


def start_distributed() -> Communicator:
    """Join the MPI job, or fail in one line saying what to install."""
    try:
        return Communicator()
    except ImportError as error:
        raise UsageError(str(error)) from None


def run(args) -> int:
    """Run `cnnkit train`."""
    check(args)
    if not (args.distributed or launched_ranks() > 1):
        with threadpool_limits(args.threads):
            return train_with_settings(args, communicator=None)
    communicator = start_distributed()
    threads = args.threads or max(1, (os.cpu_count() or 1) // communicator.local_size())
    try:
        with threadpool_limits(threads):
            return train_with_settings(args, communicator)
    except TrainingInterrupted:
        raise
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
    if is_user_error(error):
        print(f"cnnkit train: error: {where}: {error}", file=sys.stderr)
    else:
        print(f"cnnkit train: {where} failed; stopping every rank", file=sys.stderr)
        traceback.print_exc()
    sys.stderr.flush()
    communicator.abort(2)
    return 2


def settings_from(args, communicator: Communicator | None) -> TrainSettings:
    """The TrainSettings of a parsed `cnnkit train` command line."""
    defaults = TrainSettings()
    return TrainSettings(
        model=args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=defaults.momentum if args.momentum is None else args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup=args.warmup,
        seed=args.seed,
        augment=args.augment,
        val_split=args.val_split,
        limit=args.limit,
        patience=args.patience,
        grad_clip=args.grad_clip,
        label_smoothing=args.label_smoothing,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(),
        plots=args.plots,
        tensorboard=args.tensorboard,
        distributed=communicator is not None,
        sync_batch_norm=args.sync_bn,
        interruptible=True,
    )


def resume_command(args, out: str, ranks: int = 1) -> str:
    """The shell command that resumes the run of ``args`` from OUT/checkpoint.npz.

    It repeats every option given a value other than its default, from the parsed values (so
    abbreviations and ``--opt=value`` forms come out canonical), then ``--out`` and ``--resume``.
    """
    words = []
    for action in args.parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in NOT_REPEATED or value == action.default:
            continue
        words.append(action.option_strings[0])
        if action.nargs != 0:
            words.append(str(value))
    words += ["--out", out, "--resume", os.path.join(out, CHECKPOINT_NAME)]
    launcher = f"mpirun -np {ranks} " if ranks > 1 else ""
    return f"{launcher}cnnkit train {shlex.join(words)}"


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class LiveExplorer:
    """`train --explore`: the explorer, started when the run has its model and data."""

    def __init__(self, port: int, data_dir: str | None):
        self.port, self.data_dir, self.server = port, data_dir, None

    def start(self, out, model, data) -> None:
        """The run's on_start hook: serve the run and print the URL on one line."""
        from cnnkit.explore import serve_training_run

        self.server = serve_training_run(out, model, data, self.port, self.data_dir)
        print(f"cnnkit train: explorer at {self.server.url} (updated at each epoch)", flush=True)

    def serve_until_interrupted(self) -> None:
        """After training: keep the page up until Ctrl-C (SIGINT) or SIGTERM."""
        if self.server is None:
            return
        print(f"cnnkit train: explorer still at {self.server.url}; Ctrl-C stops it", flush=True)
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("cnnkit train: explorer stopped", file=sys.stderr)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def __enter__(self) -> LiveExplorer:
        return self

    def __exit__(self, *exc_info) -> None:
        """Stop serving, however training ended."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def train_with_settings(args, communicator: Communicator | None) -> int:
    """Train with the settings of ``args``; on a signal, say how to resume."""
    settings = settings_from(args, communicator)
    settings.out = str(output_path(settings))
    explorer = LiveExplorer(args.explore_port, args.data_dir) if args.explore else None
    with explorer or contextlib.nullcontext():
        try:
            metrics = run_training(settings, on_start=explorer and explorer.start)
        except TrainingInterrupted as stop:
            if communicator is None or communicator.is_root:
                ranks = 1 if communicator is None else communicator.size
                print(f"cnnkit train: {stop}", file=sys.stderr)
                if stop.checkpoint is not None:
                    resume = resume_command(args, settings.out, ranks)
                    print(f"resume with: {resume}", file=sys.stderr)
            return 128 + stop.signum
        if communicator is not None and not communicator.is_root:
            return 0
        print(
            f"test accuracy {metrics['test_accuracy']:.4f} (loss {metrics['test_loss']:.4f}, "
            f"top-5 {metrics['test_top5_accuracy']:.4f}) after {metrics['epochs']} epochs in "
            f"{metrics['elapsed_seconds']:.1f} s; run saved in {metrics['out']}"
        )
        for path in metrics.get("plots", []):
            print(f"wrote {path}")
        if explorer is not None:
            explorer.serve_until_interrupted()
    return 0
