"""One rank of a data-parallel training run on digits, for tests/test_distributed.py.

Run alone (one process, no communicator) or under ``mpiexec -n K`` (K ranks): both train the same
model in float64 with the same global batches, so their weights must agree. Rank 0 saves the
final state dict, the history, the test metrics and how far the ranks' weights drift apart.
"""

from __future__ import annotations

import argparse
import os
import signal

import numpy as np

from cnnkit import models, optim
from cnnkit.data import Compose, DataLoader, RandomShift, load_digits
from cnnkit.distributed import Communicator, launched_ranks, sync_batch_norm
from cnnkit.train import Callback, Trainer, TrainingDiverged, evaluate


def as_float64(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Transform: the float32 batch in float64 (its values are exact)."""
    return x.astype(np.float64)


class KillRank(Callback):
    """After an epoch, every rank meets at a barrier (rank 0 has written that epoch's checkpoint
    before its callbacks run), then rank ``victim`` dies by SIGKILL, as a crashed machine would
    vanish."""

    def __init__(self, epoch: int, communicator: Communicator, victim: int):
        self.epoch, self.communicator, self.victim = epoch, communicator, victim

    def on_epoch_end(self, trainer, logs):
        if logs["epoch"] != self.epoch:
            return
        self.communicator.barrier()
        if self.communicator.rank == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--sync-bn", action="store_true")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=293)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--checkpoint")
    parser.add_argument("--resume")
    parser.add_argument("--out", required=True)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--kill-rank", type=int)
    parser.add_argument("--kill-after-epoch", type=int, default=1)
    parser.add_argument(
        "--stop-log", help="on TrainingDiverged, write its message to STOP_LOG.<rank>, then raise"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    communicator = Communicator() if launched_ranks() > 1 else None
    rank, size = (0, 1) if communicator is None else (communicator.rank, communicator.size)
    splits = load_digits()
    images = splits.train.images[: args.samples]
    labels = splits.train.labels[: args.samples]
    options = {"dropout": 0.0} if models.takes_option(args.model, "dropout") else {}
    if models.takes_option(args.model, "input_size"):
        options["input_size"] = 8
    model = models.get(args.model, num_classes=10, in_channels=1, seed=0, **options)
    model.to(np.float64)
    if args.sync_bn:
        sync_batch_norm(model, communicator)
    loader = DataLoader(
        images,
        labels,
        args.batch,
        shuffle=True,
        seed=7,
        transform=Compose([RandomShift(1), as_float64]),
        shard=None if communicator is None else (rank, size),
    )
    optimizer = optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=4)
    callbacks = []
    if args.kill_rank is not None:
        callbacks.append(KillRank(args.kill_after_epoch, communicator, args.kill_rank))
    trainer = Trainer(
        model,
        optimizer,
        scheduler=scheduler,
        callbacks=callbacks,
        checkpoint_path=args.checkpoint,
        progress=False,
        communicator=communicator,
    )
    if args.resume:
        trainer.resume(args.resume, loader)
    try:
        trainer.fit(loader, args.epochs)
    except TrainingDiverged as error:
        if args.stop_log:  # the ranks' stderr interleaves: each rank reports in its own file
            with open(f"{args.stop_log}.{rank}", "w") as log:
                log.write(str(error))
        raise
    test_indices = np.arange(len(splits.test.labels))[rank::size]
    test_loader = DataLoader(
        splits.test.images, splits.test.labels, 100, indices=test_indices, transform=as_float64
    )
    test = evaluate(model, test_loader, num_classes=10, communicator=communicator)
    drift = 0.0
    if communicator is not None:
        for _, value in model.state_dict().items():
            root_copy = communicator.broadcast_(np.ascontiguousarray(value))
            local = np.max(np.abs(value - root_copy), initial=0.0)
            drift = max(drift, float(communicator.allreduce(np.array([local]))[0]))
    if rank == 0:
        np.savez(
            args.out,
            drift=drift,
            losses=[h["loss"] for h in trainer.history],
            accuracies=[h["accuracy"] for h in trainer.history],
            test=[test["loss"], test["accuracy"]],
            confusion=test["confusion_matrix"],
            **{f"state/{k}": v for k, v in model.state_dict().items()},
        )


if __name__ == "__main__":
    main()
