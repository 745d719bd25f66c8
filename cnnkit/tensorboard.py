"""TensorBoard logging of a training run with tensorboardX (`cnnkit train --tensorboard`).

After each epoch the callback writes: the epoch's scalars ("loss/train", "loss/val",
"accuracy/train", "accuracy/val", "lr", "seconds"), a histogram of every parameter
("weights/NAME") and of its gradient from the epoch's last mini-batch ("gradients/NAME"), and the
first conv layer's filters as an image ("filters/NAME"). Step = epochs done. View the run with
``tensorboard --logdir OUT/tensorboard``.
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
            if logs.get(key) is not None:
                self.writer.add_scalar(tag, float(logs[key]), step)
        model = trainer.model
        if self.histograms:
            for name, parameter in model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", parameter.data, step)
                if np.all(np.isfinite(parameter.grad)):
                    self.writer.add_histogram(f"gradients/{name}", parameter.grad, step)
        names = conv_layer_names(model)
        if self.images and names:
            grid = filter_grid(filters(model, names[0]))
            self.writer.add_image(f"filters/{names[0]}", grid, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
