"""The explorer's numbers as JSON-ready dicts: layers, feature maps, filters, probabilities,
saliency, Grad-CAM and the equation behind one output value of a convolution.

Everything is computed by the model's own forward and backward passes: one forward pass in eval
mode records every layer's output (``cnnkit.viz.tap`` on each leaf layer of the model summary,
``cnnkit.models.trace``) and each convolution's input; saliency, Grad-CAM and filters are
``cnnkit.viz.saliency``, ``grad_cam`` and ``filters``.

The equation of a convolution output (GUIDE.md; Wang et al., CNN Explainer, 2020):
``O[o, y, x] = B[o] + sum_c sum_u sum_v W[o, c, u, v] * P_p(I)[c, y*s + u*d, x*s + v*d]``
over the C_in/groups input channels of o's group, with P_p the zero padding. The window, the
filter, their products, the bias, their sum (float64) and the forward pass's value are returned
side by side; window cells in the padding are marked. For a depthwise separable convolution
(Chollet 2017) the pointwise sum over channels and the depthwise k x k sum of one channel are
returned apart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cnnkit import models, viz
from cnnkit.explore.images import display_pixels, diverging, heat, limit_text, png_data_url, unit
from cnnkit.explore.source import Subject
from cnnkit.functional._args import resolve_padding
from cnnkit.nn import Conv2d, SeparableConv2d
from cnnkit.nn.grad_mode import no_grad
from cnnkit.nn.module import Module

OVERVIEW = (6, 48)
"""(channels, largest side) of each layer's maps sent with a run, for the layer columns."""
DETAIL = (64, 64)
"""(channels, largest side) of a layer's maps for the layer view; ``channel_values`` is exact."""
MAX_VECTOR = 256
MAX_FILTERS = 64
MAX_FILTER_INPUTS = 16


class ViewError(ValueError):
    """A request names a layer, channel, position or class that the model does not have."""


@dataclass
class Layer:
    """One row of the model summary: dotted name, type, output shape of one image, parameters."""

    name: str
    type: str
    shape: tuple[int, ...]
    params: int
    module: Module

    @property
    def is_conv(self) -> bool:
        """Whether the layer is a Conv2d or a SeparableConv2d."""
        return isinstance(self.module, (Conv2d, SeparableConv2d))


def layers_of(model: Module, input_shape) -> list[Layer]:
    """The leaf layers in call order as the model summary names them (each name once)."""
    modules = dict(model.named_modules())
    seen, layers = set(), []
    for row in models.trace(model, input_shape).rows:
        if row.name in seen or row.name not in modules:
            continue
        seen.add(row.name)
        layers.append(
            Layer(row.name, row.type, row.output_shape[1:], row.params, modules[row.name])
        )
    return layers


def describe(subject: Subject, layers: list[Layer]) -> dict:
    """The model summary the page starts from."""
    maps = [layer.name for layer in layers if len(layer.shape) == 3]
    conv = [layer.name for layer in layers if layer.is_conv]
    return {
        "model": subject.name,
        "origin": subject.origin,
        "input_shape": list(subject.input_shape),
        "classes": subject.class_names,
        "dataset": subject.dataset,
        "test_count": 0 if subject.test_images is None else len(subject.test_images),
        "notes": subject.notes,
        "drawing": subject.input_shape[0] == 1,
        "layers": [
            {
                "name": layer.name,
                "type": layer.type,
                "shape": list(layer.shape),
                "params": layer.params,
                "conv": layer.is_conv,
                "separable": isinstance(layer.module, SeparableConv2d),
            }
            for layer in layers
        ],
        "conv_layers": conv,
        "map_layers": maps,
        "grad_cam_layer": _grad_cam_layer(layers),
        "run": subject.run_dir is not None,
        "epoch": subject.epoch,
        "upload_limit": limit_text(),
        "parameters": sum(p.size for p in subject.model.parameters()),
    }


def _grad_cam_layer(layers: list[Layer]) -> str | None:
    """The last conv layer whose maps have at least 2 x 2 cells (Grad-CAM at 1 x 1 is flat)."""
    maps = [layer for layer in layers if len(layer.shape) == 3]
    for candidates in ([m for m in maps if m.is_conv], maps):
        wide = [m for m in candidates if m.shape[1] * m.shape[2] >= 4]
        if wide or candidates:
            return (wide or candidates)[-1].name
    return None


_MISSING = object()


@contextlib.contextmanager
def recorded_inputs(modules: dict[str, Module]) -> Iterator[dict]:
    """Record each named module's input (the first argument of its forward) while inside."""
    record: dict = {}
    saved = {name: module.__dict__.get("forward", _MISSING) for name, module in modules.items()}

    def recorder(name: str, forward):
        def recording_forward(x, *args, **kwargs):
            record[name] = x
            return forward(x, *args, **kwargs)

        return recording_forward

    for name, module in modules.items():
        object.__setattr__(module, "forward", recorder(name, module.forward))
    try:
        yield record
    finally:
        for name, module in modules.items():
            if saved[name] is _MISSING:
                module.__dict__.pop("forward", None)
            else:
                object.__setattr__(module, "forward", saved[name])


@dataclass
class Observation:
    """One image through the model: logits (K,), each layer's output and each conv's input."""

    logits: np.ndarray
    outputs: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]


def observe(model: Module, layers: list[Layer], x: np.ndarray) -> Observation:
    """Forward one image x (C, H, W) in eval mode, recording every layer's output."""
    observed = {layer.name: layer.module for layer in layers}
    convs = {layer.name: layer.module for layer in layers if layer.is_conv}
    for name, module in convs.items():
        if isinstance(module, SeparableConv2d):
            observed[f"{name}.depthwise"] = module.depthwise
    with contextlib.ExitStack() as stack:
        taps = {name: stack.enter_context(viz.tap(module)) for name, module in observed.items()}
        inputs = stack.enter_context(recorded_inputs(convs))
        model.eval()
        with no_grad():
            logits = model(np.ascontiguousarray(x[None], dtype=model_dtype(model)))
    outputs = {name: record["output"][0].copy() for name, record in taps.items() if record}
    return Observation(
        np.asarray(logits[0], np.float64), outputs, {k: v[0].copy() for k, v in inputs.items()}
    )


def model_dtype(model: Module) -> np.dtype:
    """The dtype of the model's parameters (float32 unless built in float64)."""
    params = model.parameters()
    return params[0].dtype if params else np.dtype(np.float32)


def _tiles(maps: np.ndarray, side: int) -> np.ndarray:
    """Channels (C, H, W) resized to fit ``side`` (bilinear, viz.upsample) when larger."""
    h, w = maps.shape[1:]
    if max(h, w) <= side:
        return maps
    size = (max(1, round(h * side / max(h, w))), max(1, round(w * side / max(h, w))))
    return np.stack([viz.upsample(channel, size) for channel in maps])


def layer_picture(layer: Layer, output: np.ndarray, limits: tuple[int, int] = OVERVIEW) -> dict:
    """A layer's output as a strip of coloured tiles (its first channels, resized to fit
    ``limits`` = (channels, side)) with its range; one colour scale for the whole layer."""
    values = np.asarray(output, np.float64)
    scale = float(np.abs(values).max()) if values.size else 0.0
    entry = {
        "name": layer.name,
        "type": layer.type,
        "shape": list(values.shape),
        "min": float(values.min()) if values.size else 0.0,
        "max": float(values.max()) if values.size else 0.0,
        "scale": scale,
    }
    channels, side = limits
    if values.ndim == 3:
        tiles = _tiles(values[:channels], side)
        strip = np.concatenate(list(tiles), axis=1)
        entry.update(kind="maps", shown=len(tiles), tile=list(tiles.shape[1:]))
    elif values.ndim == 1:
        strip = values[:MAX_VECTOR, None]
        entry.update(kind="vector", shown=len(strip), tile=[len(strip), 1])
    else:
        return {**entry, "kind": "other"}
    return {**entry, "png": png_data_url(diverging(strip, scale))}


def layer_view(layers: list[Layer], seen: Observation, name: str) -> dict:
    """The maps of one layer for the layer view: more channels, larger tiles than a run's."""
    layer = _find(layers, name)
    output = seen.outputs.get(layer.name)
    if output is None or output.ndim != 3:
        raise ViewError(f"layer {name!r} has no feature maps (output shape {layer.shape})")
    return layer_picture(layer, output, DETAIL)


def run_view(
    subject: Subject, layers: list[Layer], seen: Observation, pixels, image_id, label
) -> dict:
    """What the page shows for one image: input, probabilities, top class, every layer's maps."""
    probabilities = viz.softmax(seen.logits[None])[0]
    top = int(np.argmax(probabilities))
    return {
        "image": image_id,
        "label": label,
        "input_png": png_data_url(display_pixels(pixels)),
        "probabilities": [float(p) for p in probabilities],
        "top": top,
        "top_name": subject.class_names[top] if top < len(subject.class_names) else str(top),
        "epoch": subject.epoch,
        "layers": [
            layer_picture(layer, seen.outputs[layer.name])
            for layer in layers
            if layer.name in seen.outputs
        ],
    }


def _find(layers: list[Layer], name: str) -> Layer:
    for layer in layers:
        if layer.name == name:
            return layer
    raise ViewError(f"unknown layer {name!r}")


def _index(value: int, size: int, what: str) -> int:
    if not 0 <= value < size:
        raise ViewError(f"{what} {value} is out of range (0..{size - 1})")
    return value


def channel_values(layers: list[Layer], seen: Observation, name: str, channel: int) -> dict:
    """The exact values (H, W) of one channel of a layer's feature maps."""
    layer = _find(layers, name)
    output = seen.outputs.get(layer.name)
    if output is None or output.ndim != 3:
        raise ViewError(f"layer {name!r} has no feature maps (output shape {layer.shape})")
    channel = _index(channel, len(output), "channel")
    values = np.asarray(output[channel], np.float64)
    return {
        "layer": name,
        "channel": channel,
        "values": values.tolist(),
        "scale": float(np.abs(output).max()),
        "conv": layer.is_conv,
    }


def filters_view(model: Module, layers: list[Layer], name: str) -> dict:
    """The filters of a conv layer (viz.filters): a grid of tiles, filter by input channel."""
    layer = _find(layers, name)
    if not layer.is_conv:
        raise ViewError(f"layer {name!r} is a {layer.type}, not a convolution")
    weights = np.asarray(viz.filters(model, name), np.float64)
    shown = weights[:MAX_FILTERS, :MAX_FILTER_INPUTS]
    rows, columns, kh, kw = shown.shape
    scale = float(np.abs(weights).max())
    grid = np.full((rows * (kh + 1) - 1, columns * (kw + 1) - 1), np.nan)
    for r in range(rows):
        for c in range(columns):
            grid[r * (kh + 1) : r * (kh + 1) + kh, c * (kw + 1) : c * (kw + 1) + kw] = shown[r, c]
    rgb = diverging(np.nan_to_num(grid), scale)
    rgb[np.isnan(grid)] = 235
    part = "depthwise " if isinstance(layer.module, SeparableConv2d) else ""
    return {
        "layer": name,
        "shape": list(weights.shape),
        "shown": [rows, columns],
        "scale": scale,
        "png": png_data_url(rgb),
        "title": f"{part}filters {' x '.join(map(str, weights.shape))} (out x in x kH x kW)",
    }


def explain_view(
    subject: Subject, layers: list[Layer], x: np.ndarray, target: int, name: str | None
) -> dict:
    """Saliency (viz.saliency) and Grad-CAM (viz.grad_cam) of class ``target`` as heat overlays."""
    classes = len(subject.class_names)
    target = _index(target, classes, "class")
    name = name or describe(subject, layers)["grad_cam_layer"]
    layer = _find(layers, name)
    if len(layer.shape) != 3:
        raise ViewError(f"Grad-CAM needs a layer with feature maps; {name!r} gives {layer.shape}")
    saliency = viz.saliency(subject.model, x, target)
    cam, _ = viz.grad_cam(subject.model, x, name, target)
    shown = viz.upsample(cam, saliency.shape)
    return {
        "class": target,
        "class_name": subject.class_names[target],
        "saliency": {"png": png_data_url(heat(unit(saliency))), "max": float(saliency.max())},
        "grad_cam": {
            "layer": name,
            "shape": list(cam.shape),
            "png": png_data_url(heat(unit(shown))),
            "max": float(cam.max()),
        },
    }


def conv_equation(conv: Conv2d, inp: np.ndarray, out: np.ndarray, o: int, y: int, x: int) -> dict:
    """The sum behind ``out[o, y, x]`` of Conv2d ``conv`` on input ``inp`` (C_in, H, W)."""
    o = _index(o, out.shape[0], "channel")
    y, x = _index(y, out.shape[1], "y"), _index(x, out.shape[2], "x")
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    geometry = (conv.kernel_size, conv.stride, conv.dilation)
    (top, _), (left, _) = resolve_padding(conv.padding, inp.shape[1:], *geometry)
    per_group = conv.in_channels // conv.groups
    group = o // (conv.out_channels // conv.groups)
    channels = np.arange(group * per_group, (group + 1) * per_group)
    rows = y * sh + np.arange(kh) * dh - top
    cols = x * sw + np.arange(kw) * dw - left
    h, w = inp.shape[1:]
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))
    picked = inp[channels][:, np.clip(rows, 0, inp.shape[1] - 1)][
        :, :, np.clip(cols, 0, inp.shape[2] - 1)
    ]
    window = np.where(inside, picked.astype(np.float64), 0.0)
    weights = conv.weight.data[o].astype(np.float64)
    products = window * weights
    bias = 0.0 if conv.bias is None else float(conv.bias.data[o])
    channel_sums = products.sum(axis=(1, 2))
    return {
        "kind": "conv",
        "channel": o,
        "y": y,
        "x": x,
        "kernel": [kh, kw],
        "stride": [sh, sw],
        "dilation": [dh, dw],
        "padding": [top, left],
        "input_shape": list(inp.shape),
        "input_channels": channels.tolist(),
        "rows": rows.tolist(),
        "cols": cols.tolist(),
        "padded": (~inside).tolist(),
        "window": window.tolist(),
        "weights": weights.tolist(),
        "products": products.tolist(),
        "channel_sums": channel_sums.tolist(),
        "bias": bias,
        "has_bias": conv.bias is not None,
        "sum": float(channel_sums.sum() + bias),
        "output": float(out[o, y, x]),
    }


def equation_view(
    layers: list[Layer],
    seen: Observation,
    name: str,
    channel: int,
    y: int,
    x: int,
    depth_channel: int | None = None,
) -> dict:
    """The equation of one output value of a conv layer, with the forward pass's numbers.

    For a SeparableConv2d: the pointwise sum over channels of the depthwise outputs, and the
    depthwise sum of channel ``depth_channel`` (default: the channel whose pointwise product is
    the largest in magnitude).
    """
    layer = _find(layers, name)
    if not layer.is_conv:
        raise ViewError(f"layer {name!r} is a {layer.type}; equations are shown for convolutions")
    module, inp, out = layer.module, seen.inputs[name], seen.outputs[name]
    if isinstance(module, Conv2d):
        return {"layer": name, "type": layer.type, **conv_equation(module, inp, out, channel, y, x)}
    depth = seen.outputs[f"{name}.depthwise"]
    pointwise = conv_equation(module.pointwise, depth, out, channel, y, x)
    if depth_channel is None:
        depth_channel = int(np.argmax(np.abs(pointwise["channel_sums"])))
    depth_channel = _index(depth_channel, len(depth), "depthwise channel")
    depthwise = conv_equation(module.depthwise, inp, depth, depth_channel, y, x)
    return {
        "layer": name,
        "type": layer.type,
        "kind": "separable",
        "channel": pointwise["channel"],
        "y": y,
        "x": x,
        "sum": pointwise["sum"],
        "output": pointwise["output"],
        "pointwise": pointwise,
        "depth_channel": depth_channel,
        "depthwise": depthwise,
    }
