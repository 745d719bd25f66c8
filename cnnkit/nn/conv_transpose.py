"""ConvTranspose2d (torch.nn.ConvTranspose2d): cnnkit.functional.conv_transpose as a layer."""

from __future__ import annotations

import numbers

import numpy as np

from cnnkit.functional import conv_transpose as F
from cnnkit.functional._args import pair
from cnnkit.nn.conv import _channels, init_weight_and_bias
from cnnkit.nn.module import CachedModule


class ConvTranspose2d(CachedModule):
    """2-D transposed convolution, the adjoint of Conv2d's input gradient
    (torch.nn.ConvTranspose2d; Dumoulin and Visin, "A guide to convolution arithmetic", 2016).

    Shape:
        input (N, C_in, H, W) -> output (N, C_out, H_out, W_out) with
        H_out = (H - 1)*stride - 2*padding + dilation*(kernel_size - 1) + output_padding + 1.

    weight: (C_in, C_out / groups, kH, kW); bias: (C_out,), initialised as PyTorch does.
    ``forward(x, output_size)`` picks the output_padding that gives ``output_size`` instead.
    An unbatched input (C_in, H, W) gives (C_out, H_out, W_out).
    """

    batched_ndim = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
        padding_mode: str = "zeros",
        dtype=np.float32,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = _channels(
            in_channels, out_channels, groups, "ConvTranspose2d"
        )
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)
        self.output_padding = pair(output_padding, "output_padding", minimum=0)
        self.dilation = pair(dilation, "dilation")
        if any(self.output_padding[i] >= max(self.stride[i], self.dilation[i]) for i in (0, 1)):
            raise ValueError(
                f"ConvTranspose2d output_padding {self.output_padding} must be smaller than "
                f"either stride {self.stride} or dilation {self.dilation} in each dimension"
            )
        if padding_mode != "zeros":
            raise ValueError(
                f"ConvTranspose2d padding_mode must be 'zeros' (as in torch), got {padding_mode!r}"
            )
        self.padding_mode = padding_mode
        shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        init_weight_and_bias(self, shape, bias, dtype, rng)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(N, C_out, H_out, W_out) for an input of shape (N, C_in, H, W)."""
        return F.conv_transpose2d_output_shape(
            input_shape,
            self.weight.shape,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )

    def _output_padding(self, x: np.ndarray, output_size) -> tuple[int, int]:
        """The output_padding that makes the output (H, W) = the last two of ``output_size``."""
        size = tuple(output_size) if isinstance(output_size, (tuple, list)) else None
        if (
            size is None
            or len(size) not in (2, 3, 4)
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size)
        ):
            raise ValueError(
                "ConvTranspose2d output_size must be 2 ints (H, W), or 3 or 4 ending with them, "
                f"got {output_size!r}"
            )
        smallest = tuple(
            (x.shape[2 + i] - 1) * self.stride[i]
            - 2 * self.padding[i]
            + self.dilation[i] * (self.kernel_size[i] - 1)
            + 1
            for i in (0, 1)
        )
        largest = tuple(smallest[i] + self.stride[i] - 1 for i in (0, 1))
        size = tuple(int(s) for s in size[-2:])
        if not all(smallest[i] <= size[i] <= largest[i] for i in (0, 1)):
            raise ValueError(
                f"ConvTranspose2d requested an output size of {size}, but valid sizes range "
                f"from {smallest} to {largest} (for an input of {x.shape[2:]})"
            )
        return size[0] - smallest[0], size[1] - smallest[1]

    def forward(self, x: np.ndarray, output_size=None) -> np.ndarray:
        self._check_input(x)
        if x.ndim == 4 and x.shape[1] != self.in_channels:
            raise ValueError(
                f"ConvTranspose2d expected input with {self.in_channels} channels, got "
                f"{x.shape[1]} (input shape {x.shape})"
            )
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = self._output_padding(x, output_size)
        bias = None if self.bias is None else self.bias.data
        out, self._cache = F.conv_transpose2d(
            x,
            self.weight.data,
            bias,
            self.stride,
            self.padding,
            output_padding,
            self.groups,
            self.dilation,
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = F.conv_transpose2d_backward(dout, self._take_cache())
        self.weight.grad += dweight
        if self.bias is not None:
            self.bias.grad += dbias
        return dx

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.output_padding != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text
