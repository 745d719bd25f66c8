"""TensorBoard logging of a training run with tensorboardX (`cnnkit train --tensorboard`).

After each epoch the callback writes: the epoch's scalars ("loss/train", "loss/val",
"accuracy/train", "accuracy/val", "lr", "seconds"), a histogram of every parameter
("weights/NAME") and of its gradient from the epoch's last mini-batch ("gradients/NAME"), and the
first conv layer's filters as an image ("filters/NAME"). Step = epochs done. View the run with
``tensorboard --logdir OUT/tensorboard``. A scalar that is NaN or infinite, and a histogram
whose values cannot be binned (any non-finite value, or all of them beyond tensorboardX's default
buckets, |v| < 1e20), are left out: both follow a diverging step, which the terminal reports.
"""

from __future__ import annotations

import os

import numpy as np

from cnnkit.train import Callback
from cnnkit.viz import MissingDependency, conv_layer_names, filter_grid, filters

SCALAR_TAGS = {
    "loss": "loss/train",
    "val_loss": "loss/val",
    "accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "lr": "lr",
    "seconds": "seconds",
}
HISTOGRAM_LIMIT = 1e20


def require_tensorboardx():
    """The SummaryWriter class of tensorboardX, or MissingDependency with a one-line fix."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise MissingDependency(
            "--tensorboard needs tensorboardX, which is not installed: "
            "pip install 'cnnkit[tensorboard]'"
        ) from None
    return SummaryWriter


def binnable(values: np.ndarray) -> bool:
    """True where tensorboardX's default histogram buckets (|v| < 1e20) can hold the values."""
    return bool(np.all(np.isfinite(values)) and np.any(np.abs(values) < HISTOGRAM_LIMIT))


class TensorBoardLogger(Callback):
    """Trainer callback writing scalars, weight/gradient histograms and filter images per epoch."""

    def __init__(self, log_dir: str | os.PathLike, histograms: bool = True, images: bool = True):
        writer_class = require_tensorboardx()
        self.log_dir = str(log_dir)
        self.writer = writer_class(self.log_dir)
        self.histograms, self.images = histograms, images

    def on_epoch_end(self, trainer, logs: dict) -> None:
        step = trainer.epoch
        for key, tag in SCALAR_TAGS.items():
            if logs.get(key) is not None and np.isfinite(logs[key]):
                self.writer.add_scalar(tag, float(logs[key]), step)
        model = trainer.model
        if self.histograms:
            for name, parameter in model.named_parameters():
                for kind, values in (("weights", parameter.data), ("gradients", parameter.grad)):
                    if binnable(values):
                        self.writer.add_histogram(f"{kind}/{name}", values, step)
        names = conv_layer_names(model)
        if self.images and names:
            grid = filter_grid(filters(model, names[0]))
            self.writer.add_image(f"filters/{names[0]}", grid, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
