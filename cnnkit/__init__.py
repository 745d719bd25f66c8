"""cnnkit: convolutional neural networks in readable NumPy, checked against PyTorch."""

from cnnkit import functional, nn, optim
from cnnkit.gradcheck import gradcheck

__version__ = "0.1.0"
__all__ = ["functional", "gradcheck", "nn", "optim", "__version__"]
