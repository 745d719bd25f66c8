"""Keras-style model summaries (keras.Model.summary): one row per layer, then parameter totals.

Output shapes come from running the model's own forward code on a zero batch in eval mode with
each leaf layer's ``forward`` temporarily replaced by a recorder (restored afterwards, along with
the train/eval flags and the backward caches, so the model is left as it was). By default the
recorder does not compute: it returns zeros of the shape the layer's output-size formula gives
(``compute_output_shape`` where the layer has one, the pooling formula otherwise), so the summary of
a 299 x 299 Xception costs milliseconds; ``infer=False`` runs the real layers instead.
A *leaf* is a module without children, or a SeparableConv2d (one row, as in Keras).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnkit.functional._args import output_size, resolve_padding
from cnnkit.functional.adaptive_pool import resolve_output_size
from cnnkit.nn import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2d,
    Module,
    ReLU,
    SeparableConv2d,
    Sigmoid,
    Softmax,
    Tanh,
)
from cnnkit.nn.grad_mode import no_grad

ATOMIC = (SeparableConv2d,)
SHAPE_PRESERVING = (
    BatchNorm1d,
    BatchNorm2d,
    Dropout,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)


@dataclass
class LayerRow:
    """One leaf call: dotted name, type, output shape (one per output of a Split), parameters
    (incl. buffers) and multiply-accumulates."""

    name: str
    type: str
    output_shape: tuple
    params: int
    mult_adds: int = 0


@dataclass
class Trace:
    """Every leaf call of one forward pass, in call order, and the model's output shape."""

    rows: list[LayerRow]
    input_shape: tuple[int, ...]
    output_shape: tuple


def trainable_count(module: Module) -> int:
    """Number of trainable scalars (weights, biases, batch-norm gamma and beta)."""
    return sum(p.size for p in module.parameters())


def non_trainable_count(module: Module) -> int:
    """Number of floating-point buffer scalars (batch-norm running mean and variance).

    Integer buffers (num_batches_tracked) are bookkeeping, not parameters, and are not counted,
    which is what Keras' "Non-trainable params" counts for the same network.
    """
    return sum(
        np.size(b)
        for _, b in module.named_buffers()
        if np.issubdtype(np.asarray(b).dtype, np.floating)
    )


def multiply_adds(module: Module, output_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one call of a conv or linear layer (0 for the others).

    Conv2d: every output value O[n,k,i,j] is a sum of (C/groups) * kH * kW products, so
    N * K * H_out * W_out * (C/groups) * kH * kW; Linear: N * in_features * out_features.
    SeparableConv2d: its depthwise and pointwise convolutions added.
    """
    if isinstance(module, SeparableConv2d):
        depthwise_shape = (*output_shape[:1], module.depthwise.out_channels, *output_shape[2:])
        return multiply_adds(module.depthwise, depthwise_shape) + multiply_adds(
            module.pointwise, output_shape
        )
    if isinstance(module, Conv2d):
        return int(np.prod(output_shape)) * int(np.prod(module.weight.shape[1:]))
    if isinstance(module, Linear):
        return int(np.prod(output_shape)) * module.in_features
    return 0


def _leaves(model: Module) -> list[tuple[str, Module]]:
    leaves, seen, atomic_prefixes = [], set(), []
    for name, module in model.named_modules():
        if any(name.startswith(p + ".") for p in atomic_prefixes):
            continue
        is_atomic = isinstance(module, ATOMIC)
        if is_atomic:
            atomic_prefixes.append(name)
        if (is_atomic or not module._modules) and id(module) not in seen:
            seen.add(id(module))
            leaves.append((name or type(module).__name__, module))
    return leaves


def _check_channels(module: Module, shape: tuple[int, ...], expected: int) -> None:
    if len(shape) < 2 or shape[1] != expected:
        got = shape[1] if len(shape) >= 2 else None
        raise ValueError(
            f"{type(module).__name__} expected input with {expected} channels, got {got} "
            f"(input shape {tuple(shape)})"
        )


def _pool_output_shape(module, shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) != 4:
        raise ValueError(f"{type(module).__name__} expected 4-D input (N, C, H, W), got {shape}")
    pad = resolve_padding(module.padding, shape[2:], module.kernel_size, module.stride, (1, 1))
    out = tuple(
        output_size(shape[2 + i], pad[i], module.kernel_size[i], module.stride[i], 1)
        for i in range(2)
    )
    if min(out) < 1:
        raise ValueError(
            f"{type(module).__name__} kernel {module.kernel_size} is larger than the padded input "
            f"(input shape {shape})"
        )
    return (*shape[:2], *out)


def leaf_output_shape(module: Module, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Output shape of a leaf layer from its formula, or None when the layer has no known rule."""
    shape = tuple(int(s) for s in shape)
    if isinstance(module, Conv2d):
        _check_channels(module, shape, module.in_channels)
    if isinstance(module, SeparableConv2d):
        _check_channels(module, shape, module.depthwise.in_channels)
    if isinstance(module, (BatchNorm1d, BatchNorm2d)):
        _check_channels(module, shape, module.num_features)
    if isinstance(module, Linear):
        if shape[-1] != module.in_features:
            raise ValueError(
                f"Linear expected {module.in_features} input features, got {shape[-1]} "
                f"(input shape {shape})"
            )
        return (*shape[:-1], module.out_features)
    if hasattr(module, "compute_output_shape"):
        out = tuple(int(s) for s in module.compute_output_shape(shape))
        if min(out) < 1:
            raise ValueError(
                f"{type(module).__name__} output shape {out} for input {shape} is empty"
            )
        return out
    if isinstance(module, (MaxPool2d, AvgPool2d)):
        return _pool_output_shape(module, shape)
    if isinstance(module, AdaptiveAvgPool2d):
        return (*shape[:2], *resolve_output_size(module.output_size, shape[2:], "summary"))
    if isinstance(module, GlobalAvgPool2d):
        return shape[:2]
    if isinstance(module, Flatten):
        start = module.start_dim % len(shape)
        return (*shape[:start], int(np.prod(shape[start:])))
    if isinstance(module, SHAPE_PRESERVING):
        return shape
    return None


def _as_batch_shape(input_shape) -> tuple[tuple[int, ...], bool]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        return (1, *shape), True
    if len(shape) == 4:
        return shape, False
    raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}")


def _model_dtype(model: Module) -> np.dtype:
    for p in model.parameters():
        return p.dtype
    return np.dtype(np.float32)


def trace(model: Module, input_shape, infer: bool = True) -> Trace:
    """Run ``model`` on a zero batch of ``input_shape`` in eval mode, recording every leaf call.

    ``input_shape`` is (C, H, W) (batch of one) or (N, C, H, W). With ``infer=True`` leaf layers
    with a known output-size rule return zeros of that shape instead of computing.
    """
    shape, _ = _as_batch_shape(input_shape)
    rows: list[LayerRow] = []
    leaves = _leaves(model)
    modules = list(model.modules())
    training = [m.training for m in modules]

    def recorder(name: str, module: Module):
        real_forward = type(module).forward.__get__(module)
        params = trainable_count(module) + non_trainable_count(module)

        def forward(x, *args, **kwargs):
            out_shape = leaf_output_shape(module, x.shape) if infer and not args else None
            if out_shape is None:
                out = real_forward(x, *args, **kwargs)
            else:
                out = np.zeros(out_shape, dtype=x.dtype)
            shape = _shape(out)
            mult_adds = multiply_adds(module, shape) if isinstance(out, np.ndarray) else 0
            rows.append(LayerRow(name, type(module).__name__, shape, params, mult_adds))
            return out

        return forward

    try:
        model.eval()
        for name, module in leaves:
            object.__setattr__(module, "forward", recorder(name, module))
        with no_grad():
            out = model(np.zeros(shape, dtype=_model_dtype(model)))
    finally:
        for _, module in leaves:
            module.__dict__.pop("forward", None)
        for module, mode in zip(modules, training, strict=True):
            object.__setattr__(module, "training", mode)
    return Trace(rows, shape, _shape(out))


def _shape(value) -> tuple:
    """An array's shape, or the tuple of the shapes of a layer's several outputs (Split)."""
    if isinstance(value, tuple):
        return tuple(_shape(v) for v in value)
    return tuple(np.shape(value))


def _show(shape: tuple, batch_is_none: bool) -> str:
    if shape and isinstance(shape[0], tuple):
        return ", ".join(_show(s, batch_is_none) for s in shape)
    if batch_is_none:
        return "(" + ", ".join(["None", *(str(s) for s in shape[1:])]) + ")"
    return str(tuple(shape))


def summary(model: Module, input_shape, infer: bool = True) -> str:
    """Keras-style table: layer name, type, output shape and parameters, then the totals.

    A row's parameter count includes the layer's running statistics (as Keras counts a batch
    norm's moving mean and variance); the totals split trainable (weights, biases, gamma, beta)
    from non-trainable (running mean and variance).
    """
    _, batch_is_none = _as_batch_shape(input_shape)
    result = trace(model, input_shape, infer=infer)
    header = ("Layer (name)", "Type", "Output Shape", "Param #")
    body = [
        (row.name, row.type, _show(row.output_shape, batch_is_none), f"{row.params:,}")
        for row in result.rows
    ]
    widths = [max(len(r[i]) for r in [header, *body]) + 3 for i in range(4)]
    total_width = sum(widths)

    def line(cells) -> str:
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return "".join(padded).rstrip()

    trainable, frozen = trainable_count(model), non_trainable_count(model)
    name = getattr(model, "config", {}).get("name")
    title = f'Model: "{type(model).__name__}"' + (f" ({name})" if name else "")
    lines = [
        title,
        f"Input shape: {_show(result.input_shape, batch_is_none)}",
        "_" * total_width,
        line(header),
        "=" * total_width,
        *(line(cells) for cells in body),
        "=" * total_width,
        f"Total params: {trainable + frozen:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {frozen:,}",
        "_" * total_width,
    ]
    return "\n".join(lines)
