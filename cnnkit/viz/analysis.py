"""The numbers behind cnnkit's pictures: layers by name, saliency, Grad-CAM, feature maps, grids.

NumPy only (no matplotlib): every function here returns arrays, so the maths is tested without
looking at pixels. See the package docstring (``cnnkit.viz``) for the methods and papers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np

from cnnkit.nn import Conv2d, SeparableConv2d
from cnnkit.nn.grad_mode import no_grad
from cnnkit.nn.module import Module


class VizError(ValueError):
    """A visualisation cannot be made from these inputs (unknown layer, wrong shapes, no data)."""


class MissingDependency(ImportError):
    """An optional package (matplotlib, tensorboardX) is not installed; the message says how."""


# Layers by name
# ----------------------------------------------------------------------------------------------


def conv_layer_names(model: Module) -> list[str]:
    """Dotted names of the convolution layers (Conv2d, SeparableConv2d), in forward order.

    The depthwise and pointwise halves of a SeparableConv2d are left out of this list (they are
    still valid layer names: "block1.sep.depthwise").
    """
    names, separable = [], []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in separable):
            continue
        if isinstance(module, SeparableConv2d):
            separable.append(name)
            names.append(name)
        elif isinstance(module, Conv2d):
            names.append(name)
    return names


def first_conv_name(model: Module) -> str:
    """The name of the first convolution layer; VizError if the model has none."""
    names = conv_layer_names(model)
    if not names:
        raise VizError(f"{type(model).__name__} has no convolution layer")
    return names[0]


def _layer_hint(model: Module) -> str:
    names = conv_layer_names(model)
    if not names:
        return f"{type(model).__name__} has no convolution layers"
    shown = ", ".join(names[:8])
    more = f", ... ({len(names)} in all)" if len(names) > 8 else ""
    return f"conv layers of {type(model).__name__}: {shown}{more}"


def get_layer(model: Module, name: str) -> Module:
    """The sub-module with dotted name ``name`` (as in named_modules / state_dict keys)."""
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise VizError(f"unknown layer {name!r}; {_layer_hint(model)}")
    return modules[name]


# ----------------------------------------------------------------------------------------------
# Observing a model: eval mode, kept gradients, a tap on one layer
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(model: Module) -> Iterator[None]:
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            object.__setattr__(module, "training", mode)


@contextlib.contextmanager
def _kept_gradients(model: Module) -> Iterator[None]:
    """Restore every parameter's .grad (same array, same values) after a diagnostic backward."""
    saved = [(p, p.grad, p.grad.copy()) for p in model.parameters()]
    try:
        yield
    finally:
        for p, array, values in saved:
            np.copyto(array, values)
            p.grad = array


_MISSING = object()


@contextlib.contextmanager
def tap(module: Module | None) -> Iterator[dict]:
    """Record ``module``'s output ("output") in forward and dL/d(output) ("grad") in backward.

    The module's forward and backward are wrapped by instance attributes for the duration of the
    ``with`` block and restored afterwards. ``tap(None)`` records nothing.
    """
    record: dict = {}
    if module is None:
        yield record
        return
    saved = {key: module.__dict__.get(key, _MISSING) for key in ("forward", "backward")}
    forward, backward = module.forward, module.backward

    def recording_forward(*args, **kwargs):
        out = forward(*args, **kwargs)
        record["output"] = out
        return out

    def recording_backward(dout):
        record["grad"] = dout
        return backward(dout)

    object.__setattr__(module, "forward", recording_forward)
    object.__setattr__(module, "backward", recording_backward)
    try:
        yield record
    finally:
        for key, value in saved.items():
            if value is _MISSING:
                module.__dict__.pop(key, None)
            else:
                object.__setattr__(module, key, value)


def _model_dtype(model: Module) -> np.dtype:
    params = model.parameters()
    return params[0].dtype if params else np.dtype(np.float32)


def _as_batch(model: Module, x) -> tuple[np.ndarray, bool]:
    x = np.asarray(x)
    if x.ndim == 3:
        x, batched = x[None], False
    elif x.ndim == 4:
        batched = True
    else:
        raise VizError(f"expected one image (C, H, W) or a batch (N, C, H, W), got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=_model_dtype(model)), batched


def _target_classes(target_class, logits: np.ndarray) -> np.ndarray:
    n, k = logits.shape
    if target_class is None:
        return logits.argmax(axis=1)
    classes = np.broadcast_to(np.asarray(target_class), (n,)).astype(np.int64)
    bad = classes[(classes < 0) | (classes >= k)]
    if bad.size:
        raise VizError(f"target class {int(bad[0])} is out of range for a model with {k} classes")
    return classes


def _class_score_backward(model: Module, x, target_class, layer_name: str | None = None) -> dict:
    """Forward x in eval mode, then backward dS_c/dlogits = onehot(c); record the chosen layer."""
    x, batched = _as_batch(model, x)
    layer = None if layer_name is None else get_layer(model, layer_name)
    with _eval_mode(model), _kept_gradients(model), tap(layer) as record:
        logits = model(x)
        if logits.ndim != 2:
            raise VizError(f"expected the model to output logits (N, classes), got {logits.shape}")
        classes = _target_classes(target_class, logits)
        dlogits = np.zeros_like(logits)
        dlogits[np.arange(len(x)), classes] = 1
        dx = model.backward(dlogits)
    if layer is not None and ("output" not in record or "grad" not in record):
        raise VizError(f"layer {layer_name!r} was not used in the forward and backward passes")
    return {
        "logits": logits,
        "classes": classes,
        "input_grad": dx,
        "activation": record.get("output"),
        "activation_grad": record.get("grad"),
        "batched": batched,
    }


def _unbatch(array: np.ndarray, batched: bool) -> np.ndarray:
    return array if batched else array[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed with the row maximum subtracted."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# The data behind each picture
# ----------------------------------------------------------------------------------------------


def filters(model: Module, layer_name: str | None = None) -> np.ndarray:
    """The filters of a conv layer (the first one by default): (C_out, C_in/groups, kH, kW).

    For a SeparableConv2d these are its depthwise k x k filters (its pointwise 1 x 1 mixing has
    no spatial pattern to look at).
    """
    name = first_conv_name(model) if layer_name is None else layer_name
    layer = get_layer(model, name)
    if isinstance(layer, SeparableConv2d):
        layer = layer.depthwise
    weight = getattr(layer, "_parameters", {}).get("weight")
    if weight is None or weight.data.ndim != 4:
        raise VizError(
            f"layer {name!r} ({type(layer).__name__}) has no convolution filters; "
            f"{_layer_hint(model)}"
        )
    return weight.data.copy()


def feature_maps(model: Module, x, layer_name: str) -> np.ndarray:
    """The output of layer ``layer_name`` for input x (C, H, W) or (N, C, H, W), in eval mode."""
    batch, batched = _as_batch(model, x)
    layer = get_layer(model, layer_name)
    with _eval_mode(model), no_grad(), tap(layer) as record:
        model(batch)
    if "output" not in record:
        raise VizError(f"layer {layer_name!r} was not used in the forward pass")
    return _unbatch(record["output"], batched).copy()


def input_gradient(model: Module, x, target_class=None) -> np.ndarray:
    """dS_c/dx, the gradient of the class score (logit) with respect to the input pixels.

    ``target_class``: an int, one int per image, or None for the predicted class. The result has
    the shape of x.
    """
    result = _class_score_backward(model, x, target_class)
    return _unbatch(result["input_grad"], result["batched"])


def saliency(model: Module, x, target_class=None) -> np.ndarray:
    """Simonyan et al. (2014) saliency ``max_c |dS/dx_c|``: (H, W), or (N, H, W) for a batch."""
    result = _class_score_backward(model, x, target_class)
    sal = np.abs(result["input_grad"]).max(axis=1)
    return _unbatch(sal, result["batched"])


def grad_cam(model: Module, x, layer_name: str, target_class=None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM (Selvaraju et al. 2017) at layer ``layer_name``: ``(cam, weights)``.

    ``weights[k] = mean_ij dS_c/dA[k, i, j]`` (K,) and ``cam = ReLU(sum_k weights[k] A[k])``
    (H', W') at the layer's resolution, float64; with a leading N axis for a batch.
    """
    result = _class_score_backward(model, x, target_class, layer_name)
    activation, grad = result["activation"], result["activation_grad"]
    if activation.ndim != 4:
        raise VizError(
            f"Grad-CAM needs a layer with (N, C, H, W) output; {layer_name!r} gives shape "
            f"{activation.shape}; {_layer_hint(model)}"
        )
    weights = grad.astype(np.float64).mean(axis=(2, 3))
    cam = np.maximum(np.einsum("nk,nkhw->nhw", weights, activation.astype(np.float64)), 0)
    return _unbatch(cam, result["batched"]), _unbatch(weights, result["batched"])


def class_prediction(model: Module, x) -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes, softmax probabilities) for x (C, H, W) or (N, C, H, W), eval mode."""
    batch, batched = _as_batch(model, x)
    with _eval_mode(model), no_grad():
        probabilities = softmax(model(batch))
    classes = probabilities.argmax(axis=1)
    return _unbatch(classes, batched), _unbatch(probabilities, batched)


def misclassified(
    model: Module, images: np.ndarray, labels, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices, predictions and probabilities (N, K) of the wrongly classified images.

    Sorted by the confidence of the wrong prediction, most confident first.
    """
    labels = np.asarray(labels)
    if len(images) == 0 or len(images) != len(labels):
        raise VizError(f"expected N > 0 images and N labels, got {len(images)} and {len(labels)}")
    probabilities = np.concatenate(
        [
            class_prediction(model, images[start : start + batch_size])[1]
            for start in range(0, len(images), batch_size)
        ]
    )
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    order = np.argsort(-probabilities[wrong, predictions[wrong]], kind="stable")
    wrong = wrong[order]
    return wrong, predictions[wrong], probabilities[wrong]


def normalize_confusion(matrix) -> np.ndarray:
    """Each row (true class) divided by its total, so rows sum to 1 (empty rows stay 0)."""
    matrix = np.asarray(matrix, np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def upsample(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D array to ``size`` (H, W), half-pixel centres (torch's
    ``interpolate(mode="bilinear", align_corners=False)``)."""
    array = np.asarray(array, np.float64)

    def weights(n_in: int, n_out: int):
        source = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(source).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), source - lo

    r0, r1, tr = weights(array.shape[0], size[0])
    c0, c1, tc = weights(array.shape[1], size[1])
    rows = array[r0] * (1 - tr)[:, None] + array[r1] * tr[:, None]
    return rows[:, c0] * (1 - tc) + rows[:, c1] * tc


def _unit(array: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by min and max (a constant array becomes 0)."""
    array = np.asarray(array, np.float64)
    low, span = array.min(), np.ptp(array)
    return (array - low) / span if span > 0 else np.zeros_like(array)


def _grid_shape(count: int, max_columns: int = 16) -> tuple[int, int]:
    columns = min(max(1, math.ceil(math.sqrt(count))), max_columns)
    return math.ceil(count / columns), columns


def mosaic(tiles: np.ndarray, columns: int, fill: float = np.nan, pad: int = 1) -> np.ndarray:
    """Arrange tiles (T, h, w[, 3]) in rows of ``columns``, ``pad`` pixels of ``fill`` between."""
    tiles = np.asarray(tiles, np.float64)
    count, h, w = tiles.shape[:3]
    rows = math.ceil(count / columns)
    shape = (rows * (h + pad) - pad, columns * (w + pad) - pad, *tiles.shape[3:])
    canvas = np.full(shape, fill)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        canvas[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tile
    return canvas


def _filter_tiles(weights: np.ndarray, max_filters: int, max_inputs: int = 8):
    """Tiles to show for conv weights: ("rgb", (T,k,k,3), cols) or ("gray", (T,k,k), cols)."""
    c_out, c_in = weights.shape[:2]
    if c_in == 3:
        shown = weights[:max_filters].transpose(0, 2, 3, 1)
        tiles = np.stack([_unit(tile) for tile in shown])  # each filter stretched to [0, 1]
        return "rgb", tiles, _grid_shape(len(tiles))[1]
    if c_in == 1:
        tiles = weights[:max_filters, 0]
        return "gray", tiles, _grid_shape(len(tiles))[1]
    rows = min(c_out, max(1, max_filters // min(c_in, max_inputs)))
    columns = min(c_in, max_inputs)
    tiles = weights[:rows, :columns].reshape(rows * columns, *weights.shape[2:])
    return "slices", tiles, columns


def filter_grid(weights: np.ndarray, max_filters: int = 64, min_tile: int = 24) -> np.ndarray:
    """Conv weights as one RGB image (H, W, 3) in [0, 1], e.g. for TensorBoard.

    3-channel filters are shown in colour (each stretched to [0, 1]); others in grey on one
    symmetric scale (mid-grey = 0). Tiles are enlarged (nearest neighbour) to ``min_tile`` px.
    """
    weights = np.asarray(weights, np.float64)
    mode, tiles, columns = _filter_tiles(weights, max_filters)
    if mode != "rgb":
        scale = np.abs(tiles).max() or 1.0
        tiles = np.repeat(((tiles / scale + 1) / 2)[..., None], 3, axis=-1)
    zoom = max(1, math.ceil(min_tile / max(tiles.shape[1:3])))
    tiles = tiles.repeat(zoom, axis=1).repeat(zoom, axis=2)
    return mosaic(tiles, columns, fill=1.0, pad=max(1, zoom // 2))


# ----------------------------------------------------------------------------------------------
