"""Optimizers and learning-rate schedules, step for step equal to torch.optim's."""

from cnnkit.optim.adam import Adam, AdamW
from cnnkit.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    LRScheduler,
    MultiStepLR,
    StepLR,
)
from cnnkit.optim.optimizer import Optimizer
from cnnkit.optim.rmsprop import RMSprop
from cnnkit.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearWarmup",
    "MultiStepLR",
    "Optimizer",
    "RMSprop",
    "StepLR",
]
