"""Containers: Sequential (torch.nn.Sequential) and Residual (He et al., 2016 skip connections)."""

from __future__ import annotations

import numpy as np

from cnnkit.nn import fusion
from cnnkit.nn.module import Module


class Sequential(Module):
    """Apply modules in order; backward runs them in reverse and returns dL/d(input).

    Children are named "0", "1", ... as in PyTorch, so state_dict keys match torch's.
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential expected Module instances, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module:
        layers = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*layers[index])
        return layers[index]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Each module on the previous one's output, neighbours that can share passes run
        together (cnnkit.nn.fusion: batch norm + ReLU in training, a convolution with the batch
        norm after it folded in under no_grad)."""
        return fusion.run_chain(list(self._modules.values()), x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        for module in reversed(self._modules.values()):
            dout = module.backward(dout)
        return dout


class Residual(Module):
    """y = body(x) + shortcut(x), the shortcut being the identity when None (He et al., 2016).

    Backward: dL/dx = body.backward(dL/dy) + shortcut.backward(dL/dy) (the sum over both paths).
    """

    def __init__(self, body: Module, shortcut: Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: np.ndarray) -> np.ndarray:
        skip = x if self.shortcut is None else self.shortcut(x)
        out = self.body(x)
        if out.shape != skip.shape:
            raise ValueError(
                f"Residual body output {out.shape} and shortcut output {skip.shape} differ; "
                f"give a shortcut that maps the input to the body's output shape"
            )
        return out + skip

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = self.body.backward(dout)
        return dx + (dout if self.shortcut is None else self.shortcut.backward(dout))
