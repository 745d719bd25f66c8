"""What an imported ONNX model expects of an image: its shape, pixel normalisation and classes.

A file written by ``cnnkit export`` records the training run's data (``cnnkit.data`` in the
model's metadata_props: data set, image shape, class names, per-channel mean and std), so an
image is prepared exactly as in training. Any other file says nothing about its preprocessing;
cnnkit then follows torchvision's convention for 3-channel inputs (shorter side resized and
centre-cropped to the input size, ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224,
0.225)) and leaves other inputs in [0, 1]. A classifier with 1000 outputs gets the ImageNet
class names, any other ``class 0``, ``class 1``, ...
"""

from __future__ import annotations

import json

import numpy as np

from cnnkit.imagenet import class_names_for
from cnnkit.nn.activation import LogSoftmax, Softmax
from cnnkit.nn.grad_mode import no_grad
from cnnkit.onnx.layers.tensor import FlatSoftmax

DATA_KEY = "cnnkit.data"
"""metadata_props entry where ``cnnkit export`` keeps the training run's data description."""
DATA_FIELDS = ("dataset", "image_shape", "class_names", "mean", "std")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputShapeError(ValueError):
    """An ONNX model whose image input has no fixed (C, H, W) and none was given."""


def recorded_data(properties: dict[str, str]) -> dict | None:
    """The training run's data description in a model's metadata_props, or None when absent
    or not in the expected form."""
    text = properties.get(DATA_KEY)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not all(key in data for key in DATA_FIELDS):
        return None
    return data


def image_shape(graph, given: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """(C, H, W) of the graph's first input: ``given`` when set, else the declared one."""
    if given is not None:
        return tuple(given)
    declared = graph.input_shapes[0] if graph.input_shapes else ()
    if len(declared) != 4 or any(not isinstance(d, int) for d in declared[1:]):
        shown = "x".join("?" if d is None else str(d) for d in declared) or "unknown"
        raise InputShapeError(
            f"the ONNX model's input {graph.input_names[0]!r} has shape {shown}, not an image "
            "batch (N, C, H, W) with fixed C, H and W; give --input-shape C,H,W"
        )
    return tuple(declared[1:])


def describe(graph, given: tuple[int, int, int] | None = None) -> dict:
    """How to feed ``graph`` (a cnnkit.onnx.load result) one image, as a checkpoint's data
    metadata: dataset (or None), image_shape, class_names, mean, std and crop (whether to
    centre-crop instead of stretching to the input size)."""
    recorded = recorded_data(graph.metadata.get("properties", {}))
    if recorded is not None and given is None:
        return {**recorded, "crop": False}
    shape = image_shape(graph, given)
    num_outputs = output_count(graph, shape)
    channels = shape[0]
    rgb = channels == 3
    return {
        "dataset": None,
        "image_shape": list(shape),
        "class_names": class_names_for(num_outputs),
        "mean": list(IMAGENET_MEAN) if rgb else [0.0] * channels,
        "std": list(IMAGENET_STD) if rgb else [1.0] * channels,
        "crop": rgb,
    }


def gives_probabilities(graph) -> bool:
    """Whether the graph's first output is a softmax (probabilities rather than logits)."""
    output = graph.output_names[0]
    for step in graph.steps:
        if output in step.outputs:
            module = step.module
            if isinstance(module, FlatSoftmax):
                return not module.log
            return isinstance(module, Softmax) and not isinstance(module, LogSoftmax)
    return False


def output_count(graph, shape: tuple[int, int, int]) -> int:
    """The number of class scores ``graph`` gives for one image of ``shape`` (C, H, W)."""
    with no_grad():
        out = graph(np.zeros((1, *shape), np.float32))
    if isinstance(out, tuple):
        out = out[0]
    if out.ndim != 2:
        raise InputShapeError(
            f"the ONNX model gives outputs of shape {out.shape} for one image, not class scores "
            "(1, K)"
        )
    return int(out.shape[1])
