"""Layers run together: the passes a chain of layers can share, bit for bit the same result.

- Training: a BatchNorm2d followed by a ReLU is one compiled pass forward and backward
  (``bn(x, relu=relu)``; BatchNorm2d.fuses says when).
- Inference (under cnnkit.no_grad()): the eval-mode BatchNorm2d after a Conv2d or
  SeparableConv2d, and a ReLU after that, are applied to the convolution's output in place:
  y = relu(z * scale + shift) per channel, with BatchNorm2d's own scale = gamma /
  sqrt(running_var + eps) and shift = beta - running_mean * scale, in one pass and no new array
  (cnnkit.functional.norm.batch_norm_inference_), where the layers one by one make three or
  four passes and two arrays. The convolution's output is a fresh array that nothing else
  reads under no_grad, so writing into it changes nothing else.
- Inference: a ReLU, ReLU6 or Hardtanh right after a Conv2d or Conv1d is the convolution's
  clamp (F.conv2d's ``clamp``), applied with the bias as each thread's images are written:
  one pass over the output fewer, and no second array (cnnkit.onnx's graphs fuse the same pairs).

A layer whose forward is wrapped on the instance (a recording tap of cnnkit.viz, the summary's
shape trace, cnnkit.onnx.export's tracer) is never fused, so that whatever wraps it sees it run
and its output is never overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cnnkit.functional.norm import batch_norm_inference_
from cnnkit.nn.activation import ReLU
from cnnkit.nn.conv import Conv1d, Conv2d, SeparableConv2d
from cnnkit.nn.grad_mode import is_grad_enabled
from cnnkit.nn.modern_activation import Hardtanh, ReLU6
from cnnkit.nn.module import Module
from cnnkit.nn.norm import BatchNorm2d

FUSED = "applied to the convolution's output in place"
"""What a batch norm or ReLU fused under no_grad is given as its cache, which no_grad drops."""


def run_chain(modules: Sequence[Module], x: np.ndarray) -> np.ndarray:
    """Each of ``modules`` on the previous one's output, fused where the module docstring says."""
    index = 0
    while index < len(modules):
        module, rest = modules[index], modules[index + 1 :]
        follower = rest[0] if rest else None
        normalized = _normalized_in_place(module, rest)
        if normalized:
            x = _convolve_and_normalize(module, *rest[: normalized - 1], x=x)
            index += normalized
        elif follower is not None and clamps(module, follower):
            x = convolve_and_clamp(module, follower, x)
            index += 2
        elif isinstance(module, BatchNorm2d) and module.fuses(follower):
            x = module(x, relu=follower)
            index += 2
        else:
            x = module(x)
            index += 1
    return x


def _unwrapped(*modules: Module) -> bool:
    return all("forward" not in module.__dict__ for module in modules)


def _normalized_in_place(module: Module, rest: Sequence[Module]) -> int:
    """3 (convolution, batch norm, ReLU), 2 (convolution, batch norm) or 0: how many layers from
    ``module`` run as a convolution whose output is normalised in place."""
    if is_grad_enabled() or not rest or not isinstance(module, (Conv2d, SeparableConv2d)):
        return 0
    bn = rest[0]
    last = module.pointwise if isinstance(module, SeparableConv2d) else module
    inner = (module.depthwise, last) if last is not module else ()
    if not (
        type(bn) is BatchNorm2d
        and not bn.training
        and bn.track_running_stats
        and bn.num_features == last.out_channels
        and bn.running_mean.dtype == last.weight.data.dtype
        and _unwrapped(module, bn, *inner)
    ):
        return 0
    relu = rest[1] if len(rest) > 1 else None
    return 3 if type(relu) is ReLU and _unwrapped(relu) else 2


def _convolve_and_normalize(
    module: Module, bn: BatchNorm2d, relu: ReLU | None = None, *, x: np.ndarray
) -> np.ndarray:
    out = module(x)
    gamma = None if bn.weight is None else bn.weight.data
    beta = None if bn.bias is None else bn.bias.data
    batch_norm_inference_(
        out, bn.running_mean, bn.running_var, gamma, beta, bn.eps, relu=relu is not None
    )
    for layer in (bn, relu):
        if layer is not None:  # as after its own no_grad call: backward says why it cannot run
            layer._cache = FUSED
    return out


def activation_clamp(module: Module) -> tuple[float, float] | None:
    """(low, high) of a ReLU (0, inf), ReLU6 (0, 6) or Hardtanh layer, else None."""
    if type(module) is ReLU:
        return 0.0, float("inf")
    if type(module) is ReLU6:
        return 0.0, 6.0
    if type(module) is Hardtanh:
        return module.min_val, module.max_val
    return None


def clamps(module: Module, activation: Module) -> bool:
    """Whether ``activation`` runs as ``module``'s clamp: under no_grad, a Conv2d or Conv1d
    and a ReLU, ReLU6 or Hardtanh, neither wrapped."""
    return (
        not is_grad_enabled()
        and type(module) in (Conv2d, Conv1d)
        and activation_clamp(activation) is not None
        and _unwrapped(module, activation)
    )


def convolve_and_clamp(module: Conv2d | Conv1d, activation: Module, x: np.ndarray) -> np.ndarray:
    """activation(module(x)) in one pass over the output (see :func:`clamps`)."""
    out = module.convolve(x, activation_clamp(activation))
    activation._cache = FUSED
    return out
