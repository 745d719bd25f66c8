"""Small parameter-free layers the zoo needs and cnnkit.nn does not have (yet)."""

from __future__ import annotations

import numpy as np

from cnnkit.nn.module import CachedModule


class GlobalMaxPool2d(CachedModule):
    """Maximum over H and W of each channel (keras.layers.GlobalMaxPooling2D).

    Backward sends each gradient to the first maximum in row-major order (as PyTorch's
    adaptive_max_pool2d does on CPU).

    Shape:
        (N, C, H, W) -> (N, C).
    """

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        """(N, C) for an input of shape (N, C, H, W)."""
        if len(input_shape) != 4:
            raise ValueError(f"GlobalMaxPool2d expected 4-D input (N, C, H, W), got {input_shape}")
        return tuple(input_shape[:2])

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        self.compute_output_shape(x.shape)
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        index = flat.argmax(axis=2)
        self._cache = (x.shape, index)
        return np.take_along_axis(flat, index[:, :, None], axis=2)[:, :, 0]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, index = self._take_cache()
        dx = np.zeros((shape[0], shape[1], shape[2] * shape[3]), dtype=dout.dtype)
        np.put_along_axis(dx, index[:, :, None], dout[:, :, None], axis=2)
        return dx.reshape(shape)
