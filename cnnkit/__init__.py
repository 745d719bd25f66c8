"""cnnkit: convolutional neural networks in readable NumPy, checked against PyTorch."""

from cnnkit import data, functional, io, models, nn, optim
from cnnkit.allocator import keep_freed_memory
from cnnkit.gradcheck import gradcheck
from cnnkit.nn.grad_mode import is_grad_enabled, no_grad

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "data",
    "functional",
    "gradcheck",
    "io",
    "is_grad_enabled",
    "keep_freed_memory",
    "models",
    "nn",
    "no_grad",
    "optim",
]
