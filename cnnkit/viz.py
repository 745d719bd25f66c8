"""Pictures of what a CNN learns and sees: curves, filters, feature maps, confusion, saliency, CAM.

Three layers, so that the maths can be tested without looking at pixels:

- *compute* functions (NumPy only): ``filters``, ``feature_maps``, ``input_gradient``,
  ``saliency``, ``grad_cam``, ``misclassified``, ``normalize_confusion``, ``upsample``,
  ``filter_grid``;
- *figure* functions (``*_figure``) that return a matplotlib Figure built from that data;
- *plot* functions (``plot_*``) that build the figure and write a PNG (and an SVG on request),
  returning the list of written paths.

Saliency (Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", 2014): the class
score S_c is the logit of class c (before the softmax); the map is ``max_channels |dS_c/dx|``,
obtained by running the model's backward pass with dL/dlogits = onehot(c) down to the pixels.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017): for the activation A (K channels) of a chosen layer,
``alpha_k = mean_ij dS_c/dA_kij`` and ``cam = ReLU(sum_k alpha_k A_k)``, at the layer's
resolution (``upsample`` brings it to the input size for display).

Both run in eval mode (batch norm uses running statistics, dropout is off), so each image's map
depends on that image only; the model's parameter gradients and train/eval modes are restored
afterwards. An intermediate layer is observed by temporarily wrapping that sub-module's forward
(to record its output A) and backward (to record dS/dA on its way down), whatever the model's
structure (Sequential, residual blocks, separable convolutions).

matplotlib (the ``viz`` extra) is imported only when a figure is drawn. Figures are drawn with
``matplotlib.figure.Figure`` and the Agg canvas, never pyplot: no display is needed and the
caller's pyplot backend is left alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from cnnkit.nn import Conv2d, SeparableConv2d
from cnnkit.nn.grad_mode import no_grad
from cnnkit.nn.module import Module

DPI = 100
"""Dots per inch of the written PNGs: a figure of w x h inches is (100 w) x (100 h) pixels."""

CURVES_FIGSIZE = (11.0, 4.2)
CONFUSION_MIN_SIDE = 5.0
SALIENCY_FIGSIZE = (10.5, 3.8)
GRAD_CAM_FIGSIZE = (10.5, 3.8)

PathLike = str | os.PathLike


class VizError(ValueError):
    """A visualisation cannot be made from these inputs (unknown layer, wrong shapes, no data)."""


class MissingDependency(ImportError):
    """An optional package (matplotlib, tensorboardX) is not installed; the message says how."""


def require_matplotlib():
    """Import matplotlib (the ``viz`` extra) or raise MissingDependency with a one-line fix."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependency(
            "plots need matplotlib, which is not installed: pip install 'cnnkit[viz]'"
        ) from None
    return Figure


# ----------------------------------------------------------------------------------------------
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
# Figures
# ----------------------------------------------------------------------------------------------


def _figure(figsize: tuple[float, float]):
    figure_class = require_matplotlib()
    return figure_class(figsize=figsize, dpi=DPI, layout="constrained")


def _colormap(name: str, bad: str):
    """A copy of a named colormap whose NaN ("bad") colour is ``bad``."""
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=bad)


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _display_image(image) -> tuple[np.ndarray, str | None]:
    """(array for imshow, colormap): (H, W) grey for 1 channel, (H, W, 3) for 3, else the mean."""
    image = np.asarray(image, np.float64)
    if image.ndim == 2:
        return np.clip(image, 0, 1), "gray"
    if image.shape[0] == 3:
        return np.clip(image.transpose(1, 2, 0), 0, 1), None
    return np.clip(image.mean(axis=0), 0, 1), "gray"


def _show_image(ax, image, title: str) -> None:
    pixels, cmap = _display_image(image)
    ax.imshow(pixels, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    _integer_ticks(ax)


def _history(source) -> tuple[list[dict], dict]:
    if isinstance(source, (str, os.PathLike)):
        source = load_metrics(source)
    if isinstance(source, Mapping):
        if "history" not in source:
            raise VizError("metrics have no 'history' (expected a `cnnkit train` metrics.json)")
        return list(source["history"]), dict(source)
    return list(source), {}


def load_metrics(path: PathLike) -> dict:
    """A run's metrics.json, given the file or its run directory."""
    path = Path(path)
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        where = f"no metrics.json in {path}" if path.is_dir() else f"{path} does not exist"
        raise VizError(f"{where} (expected a `cnnkit train` run directory or its metrics.json)")
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise VizError(f"cannot read {file}: {error}") from None


def curves_figure(history_or_metrics):
    """Loss and accuracy per epoch, train vs validation, learning rate on a secondary axis.

    ``history_or_metrics``: the list of per-epoch dicts of ``Trainer.history``, a metrics dict,
    or the path of a run directory / metrics.json.
    """
    history, metrics = _history(history_or_metrics)
    if not history:
        raise VizError("the training history is empty: no epoch to plot")
    fig = _figure(CURVES_FIGSIZE)
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]

    def series(key):
        values = [h.get(key) for h in history]
        return (
            None if all(v is None for v in values) else [np.nan if v is None else v for v in values]
        )

    style = {"marker": "o", "markersize": 4, "linewidth": 1.8}
    for ax, key, label in ((loss_ax, "loss", "Loss"), (acc_ax, "accuracy", "Accuracy")):
        for prefix, name, colour in (
            ("", "train", "tab:blue"),
            ("val_", "validation", "tab:orange"),
        ):
            values = series(prefix + key)
            if values is not None:
                ax.plot(epochs, values, label=name, color=colour, **style)
        ax.set_title(f"{label} per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key if key == "loss" else "accuracy (fraction correct)")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if metrics.get("test_accuracy") is not None:
        acc_ax.axhline(
            metrics["test_accuracy"],
            color="tab:green",
            linestyle=":",
            label=f"test (final) {metrics['test_accuracy']:.3f}",
        )
    lr = series("lr")
    if lr is not None:
        lr_ax = loss_ax.twinx()
        lr_ax.plot(
            epochs, lr, color="tab:gray", linestyle="--", linewidth=1.2, label="learning rate"
        )
        lr_ax.set_ylabel("learning rate")
        lr_ax.set_ylim(bottom=0, top=max(np.nanmax(lr), 1e-12) * 1.1)
    for ax, extra in ((loss_ax, lr_ax if lr is not None else None), (acc_ax, None)):
        handles, labels = ax.get_legend_handles_labels()
        if extra is not None:
            more = extra.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        if len(handles) > 1:
            ax.legend(handles, labels, loc="best", fontsize=9)
    where = f": {metrics['model']} on {metrics['dataset']}" if "model" in metrics else ""
    fig.suptitle(f"Training curves{where}")
    return fig


def _mosaic_axes(ax, grid_shape, tile_shape, zoom: int, pad: int, labels: tuple[str, str]):
    """Tick each tile row by its first index and each column by its offset (or index)."""
    rows, columns = grid_shape
    h, w = tile_shape
    ax.set_xticks(np.arange(columns) * (w * zoom + pad) + (w * zoom - 1) / 2)
    ax.set_yticks(np.arange(rows) * (h * zoom + pad) + (h * zoom - 1) / 2)
    x_label, y_label = labels
    if y_label == "row label":
        ax.set_xticklabels([f"+{c}" for c in range(columns)])
        ax.set_yticklabels([str(r * columns) for r in range(rows)])
    else:
        ax.set_xticklabels([str(c) for c in range(columns)])
        ax.set_yticklabels([str(r) for r in range(rows)])
    ax.tick_params(length=0, labelsize=8)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)


def _zoomed_mosaic(tiles: np.ndarray, columns: int, fill: float, min_tile: int = 12):
    """Tiles enlarged (nearest neighbour) so that the one-pixel gaps between them look thin."""
    zoom = max(1, math.ceil(min_tile / max(tiles.shape[1:3])))
    tiles = np.asarray(tiles, np.float64).repeat(zoom, axis=1).repeat(zoom, axis=2)
    return mosaic(tiles, columns, fill=fill), zoom


def _mosaic_height(grid: np.ndarray, image_width: float) -> float:
    """Figure height (inches, 0.1 steps) that fits the mosaic at ``image_width`` plus titles."""
    aspect = grid.shape[0] / grid.shape[1]
    return round(min(max(image_width * aspect + 1.4, 3.5), 12.0), 1)


def filters_figure(weights: np.ndarray, layer_name: str = "", max_filters: int = 64):
    """Conv filters as an image grid: colour for 3-channel inputs, else grey on one scale.

    Single-channel (and RGB) filters are laid out row by row (filter = row label + column);
    filters with several input channels as a grid of filters (rows) by input channels (columns).
    """
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 4:
        raise VizError(f"expected conv weights (C_out, C_in, kH, kW), got shape {weights.shape}")
    c_out, c_in, kh, kw = weights.shape
    mode, tiles, columns = _filter_tiles(weights, max_filters)
    rows = math.ceil(len(tiles) / columns)
    grid, zoom = _zoomed_mosaic(tiles, columns, fill=1.0 if mode == "rgb" else np.nan)
    width = 6.5 if mode == "rgb" else 8.0
    fig = _figure((width, _mosaic_height(grid, 5.6)))
    ax = fig.subplots()
    if mode == "rgb":
        ax.imshow(grid, interpolation="nearest")
    else:
        scale = float(np.abs(tiles).max()) or 1.0
        cmap = _colormap("gray", bad="#b0c4de")
        image = ax.imshow(grid, cmap=cmap, vmin=-scale, vmax=scale, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8, label="weight (mid-grey = 0)")
    if mode == "slices":
        labels = ("input channel", "filter (output channel)")
        shown = f"filters 0-{rows - 1} x input channels 0-{columns - 1}"
    else:
        labels = ("filter = row label + column", "row label")
        shown = f"first {len(tiles)} filters" if len(tiles) < c_out else f"all {c_out} filters"
    _mosaic_axes(ax, (rows, columns), (kh, kw), zoom, 1, labels)
    colour = "colour, each filter stretched to its own range" if mode == "rgb" else "grey = 0"
    ax.set_title(f"{shown}, {colour}", fontsize=10)
    name = f"{layer_name} " if layer_name else ""
    fig.suptitle(f"Filters of layer {name}(weights {c_out} x {c_in} x {kh} x {kw})")
    return fig


def feature_maps_figure(maps: np.ndarray, layer_name: str = "", image=None, max_maps: int = 64):
    """Activations (C, H, W) of one image as a grid on one colour scale, the input beside it."""
    maps = np.asarray(maps, np.float64)
    if maps.ndim != 3:
        raise VizError(
            f"feature maps must be (C, H, W) for one image, got shape {maps.shape} "
            f"(choose a convolutional layer)"
        )
    channels, h, w = maps.shape
    shown = maps[:max_maps]
    rows, columns = _grid_shape(len(shown))
    grid, zoom = _zoomed_mosaic(shown, columns, fill=np.nan)
    fig = _figure((11.0 if image is not None else 8.0, _mosaic_height(grid, 5.6)))
    if image is not None:
        image_ax, ax = fig.subplots(1, 2, width_ratios=[1, 2.6])
        _show_image(image_ax, image, "input image")
    else:
        ax = fig.subplots()
    low, high = float(np.min(shown)), float(np.max(shown))
    picture = ax.imshow(
        grid,
        cmap=_colormap("viridis", bad="white"),
        vmin=low,
        vmax=high if high > low else low + 1,
        interpolation="nearest",
    )
    fig.colorbar(picture, ax=ax, shrink=0.8, label="activation")
    _mosaic_axes(
        ax, (rows, columns), (h, w), zoom, 1, ("channel = row label + column", "row label")
    )
    count = f"first {len(shown)} of {channels}" if len(shown) < channels else f"all {channels}"
    ax.set_title(f"{count} channels, {h} x {w} each, one colour scale", fontsize=10)
    name = f" {layer_name}" if layer_name else ""
    fig.suptitle(f"Feature maps (activations) of layer{name}")
    return fig


def confusion_figure(matrix, class_names: Sequence[str] | None = None, normalize: bool = False):
    """Confusion matrix (rows: true class, columns: predicted), counts or row-normalised."""
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise VizError(f"a confusion matrix must be square (K, K), got shape {counts.shape}")
    k = counts.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise VizError(f"{len(names)} class names for a {k} x {k} confusion matrix")
    values = normalize_confusion(counts) if normalize else counts.astype(np.float64)
    side = round(max(CONFUSION_MIN_SIDE, 0.55 * k + 2.0), 1)
    fig = _figure((side + 1.0, side))
    ax = fig.subplots()
    top = values.max() if values.max() > 0 else 1.0
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else top)
    fig.colorbar(
        image,
        ax=ax,
        shrink=0.8,
        label="fraction of the true class" if normalize else "number of images",
    )
    if k <= 30:
        size = 9 if k <= 12 else 7
        for i in range(k):
            for j in range(k):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
                colour = "white" if values[i, j] > 0.5 * (1 if normalize else top) else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=size, color=colour)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(
        names,
        rotation=45 if max(map(len, names)) > 3 else 0,
        ha="right" if max(map(len, names)) > 3 else "center",
    )
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = counts.sum()
    accuracy = f", accuracy {np.trace(counts) / total:.3f}" if total else ""
    kind = "normalised by true class" if normalize else "counts"
    ax.set_title(f"Confusion matrix ({kind}){accuracy}")
    return fig


def _class_label(index: int, class_names: Sequence[str] | None) -> str:
    return str(index) if class_names is None else f"{class_names[index]!s}"


def saliency_figure(image, saliency_map: np.ndarray, title: str = "Saliency map"):
    """Input, saliency map (max over channels of |dS/dx|) and the map over the input."""
    saliency_map = np.asarray(saliency_map, np.float64)
    if saliency_map.ndim != 2:
        raise VizError(f"a saliency map must be (H, W), got shape {saliency_map.shape}")
    fig = _figure(SALIENCY_FIGSIZE)
    image_ax, map_ax, overlay_ax = fig.subplots(1, 3)
    _show_image(image_ax, image, "input image")
    shown = map_ax.imshow(saliency_map, cmap="hot", vmin=0, interpolation="nearest")
    fig.colorbar(shown, ax=map_ax, shrink=0.8, label="|d score / d pixel|")
    map_ax.set_title("saliency: max over channels |dS/dx|")
    map_ax.set_xlabel("x (pixels)")
    map_ax.set_ylabel("y (pixels)")
    pixels, cmap = _display_image(image)
    overlay_ax.imshow(pixels, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    overlay_ax.imshow(_unit(saliency_map), cmap="hot", alpha=0.55, interpolation="nearest")
    overlay_ax.set_title("saliency over the input")
    overlay_ax.set_xlabel("x (pixels)")
    overlay_ax.set_ylabel("y (pixels)")
    for ax in (map_ax, overlay_ax):
        _integer_ticks(ax)
    fig.suptitle(title)
    return fig


def grad_cam_figure(image, cam: np.ndarray, title: str = "Grad-CAM"):
    """Input, Grad-CAM at the layer's resolution and (upsampled) over the input."""
    cam = np.asarray(cam, np.float64)
    if cam.ndim != 2:
        raise VizError(f"a class activation map must be (H, W), got shape {cam.shape}")
    pixels, cmap = _display_image(image)
    fig = _figure(GRAD_CAM_FIGSIZE)
    image_ax, cam_ax, overlay_ax = fig.subplots(1, 3)
    _show_image(image_ax, image, "input image")
    shown = cam_ax.imshow(cam, cmap="jet", vmin=0, interpolation="nearest")
    fig.colorbar(shown, ax=cam_ax, shrink=0.8, label="ReLU(sum_k w_k A_k)")
    cam_ax.set_title(f"Grad-CAM at layer resolution ({cam.shape[0]} x {cam.shape[1]})")
    cam_ax.set_xlabel("x (layer cells)")
    cam_ax.set_ylabel("y (layer cells)")
    overlay_ax.imshow(pixels, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    overlay_ax.imshow(
        _unit(upsample(cam, pixels.shape[:2])), cmap="jet", alpha=0.45, vmin=0, vmax=1
    )
    overlay_ax.set_title("upsampled over the input")
    overlay_ax.set_xlabel("x (pixels)")
    overlay_ax.set_ylabel("y (pixels)")
    for ax in (cam_ax, overlay_ax):
        _integer_ticks(ax)
    fig.suptitle(title)
    return fig


def misclassified_figure(
    images: np.ndarray,
    labels,
    predictions,
    probabilities=None,
    class_names: Sequence[str] | None = None,
    total: int | None = None,
    max_images: int = 36,
):
    """A grid of wrongly classified images titled 'true X / pred Y (p)'."""
    images = np.asarray(images)[:max_images]
    if len(images) == 0:
        raise VizError("no misclassified images to show: every image was classified correctly")
    rows, columns = _grid_shape(len(images), max_columns=8)
    fig = _figure((round(1.45 * columns + 0.4, 1), round(1.6 * rows + 0.7, 1)))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for index, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= len(images):
            ax.set_axis_off()
            continue
        pixels, cmap = _display_image(images[index])
        ax.imshow(pixels, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        true, predicted = int(labels[index]), int(predictions[index])
        confidence = "" if probabilities is None else f" ({probabilities[index][predicted]:.2f})"
        ax.set_title(
            f"true {_class_label(true, class_names)}\npred {_class_label(predicted, class_names)}"
            f"{confidence}",
            fontsize=8,
            color="firebrick",
        )
    of = f" of {total}" if total is not None else ""
    fig.suptitle(
        f"Misclassified test images: {len(images)}{of}, most confident mistakes first\n"
        "(title: true class / predicted class (probability))",
        fontsize=10,
    )
    return fig


# ----------------------------------------------------------------------------------------------
# Writing files
# ----------------------------------------------------------------------------------------------


def save_figure(fig, path: PathLike, svg: bool = False, dpi: int = DPI) -> list[Path]:
    """Write ``fig`` as PNG (and SVG if asked or if ``path`` ends in .svg); close it.

    ``path`` "plots/curves.png" (or "plots/curves") gives plots/curves.png [+ plots/curves.svg].
    """
    path = Path(path)
    if path.suffix.lower() == ".svg":
        svg = True
    base = path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path
    base.parent.mkdir(parents=True, exist_ok=True)
    written = [base.with_name(base.name + ".png")]
    if svg:
        written.append(base.with_name(base.name + ".svg"))
    try:
        for file in written:
            fig.savefig(file, dpi=dpi, format=file.suffix[1:])
    except OSError as error:
        raise VizError(f"cannot write {file}: {error.strerror or error}") from None
    finally:
        fig.clear()
    return written


def plot_curves(history_or_metrics, path: PathLike, svg: bool = False) -> list[Path]:
    """Training curves (see ``curves_figure``) written to ``path``."""
    return save_figure(curves_figure(history_or_metrics), path, svg)


def plot_filters(
    model_or_weights,
    path: PathLike,
    layer_name: str | None = None,
    max_filters: int = 64,
    svg: bool = False,
) -> list[Path]:
    """Filters of a model's conv layer (the first by default), or of a weight array."""
    if isinstance(model_or_weights, Module):
        name = layer_name or first_conv_name(model_or_weights)
        weights = filters(model_or_weights, name)
    else:
        name, weights = layer_name or "", model_or_weights
    return save_figure(filters_figure(weights, name, max_filters), path, svg)


def plot_feature_maps(
    model: Module,
    x,
    layer_name: str,
    path: PathLike,
    image=None,
    max_maps: int = 64,
    svg: bool = False,
) -> list[Path]:
    """Feature maps of one image x (C, H, W) at ``layer_name``; ``image`` is shown beside them
    (the un-normalised pixels in [0, 1]; default: x stretched to [0, 1])."""
    maps = feature_maps(model, x, layer_name)
    if maps.ndim != 3:
        raise VizError(
            f"layer {layer_name!r} gives output of shape {maps.shape} for one image, not "
            f"feature maps (C, H, W); {_layer_hint(model)}"
        )
    image = _unit(x) if image is None else image
    return save_figure(feature_maps_figure(maps, layer_name, image, max_maps), path, svg)


def plot_confusion_matrix(
    matrix_or_metrics,
    path: PathLike,
    class_names: Sequence[str] | None = None,
    normalize: bool = False,
    svg: bool = False,
) -> list[Path]:
    """Confusion matrix from an array, a metrics dict, or a run directory / metrics.json."""
    source = matrix_or_metrics
    if isinstance(source, (str, os.PathLike)):
        source = load_metrics(source)
    if isinstance(source, Mapping):
        if "confusion_matrix" not in source:
            raise VizError("metrics have no 'confusion_matrix' (expected a `cnnkit train` run)")
        class_names = class_names or source.get("class_names")
        source = source["confusion_matrix"]
    return save_figure(confusion_figure(source, class_names, normalize), path, svg)


def _class_title(model: Module, x, target_class, class_names) -> tuple[int, str]:
    predicted, probabilities = class_prediction(model, x)
    target = int(predicted) if target_class is None else int(target_class)
    if not 0 <= target < len(probabilities):
        raise VizError(
            f"target class {target} is out of range for a model with {len(probabilities)} classes"
        )
    text = (
        f"class {_class_label(target, class_names)!r} (p = {probabilities[target]:.3f}); "
        f"predicted {_class_label(int(predicted), class_names)!r}"
    )
    return target, text


def _one_image(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 4 and len(x) == 1:
        x = x[0]
    if x.ndim != 3:
        raise VizError(f"expected one image (C, H, W), got shape {x.shape}")
    return x


def plot_saliency(
    model: Module,
    x,
    path: PathLike,
    target_class: int | None = None,
    class_names: Sequence[str] | None = None,
    image=None,
    svg: bool = False,
) -> list[Path]:
    """Saliency map of one image x (C, H, W) for ``target_class`` (default: the prediction)."""
    x = _one_image(x)
    target, text = _class_title(model, x, target_class, class_names)
    saliency_map = saliency(model, x, target)
    image = _unit(x) if image is None else image
    return save_figure(saliency_figure(image, saliency_map, f"Saliency for {text}"), path, svg)


def plot_grad_cam(
    model: Module,
    x,
    layer_name: str,
    path: PathLike,
    target_class: int | None = None,
    class_names: Sequence[str] | None = None,
    image=None,
    svg: bool = False,
) -> list[Path]:
    """Grad-CAM of one image x (C, H, W) at ``layer_name`` for ``target_class``."""
    x = _one_image(x)
    target, text = _class_title(model, x, target_class, class_names)
    cam, _ = grad_cam(model, x, layer_name, target)
    image = _unit(x) if image is None else image
    title = f"Grad-CAM at {layer_name} for {text}"
    return save_figure(grad_cam_figure(image, cam, title), path, svg)


def plot_misclassified(
    model: Module,
    images: np.ndarray,
    labels,
    path: PathLike,
    class_names: Sequence[str] | None = None,
    display=None,
    max_images: int = 36,
    svg: bool = False,
) -> list[Path]:
    """Grid of the misclassified ``images`` (model inputs); ``display`` are the pixels to show
    (un-normalised, in [0, 1]; default: each input stretched to [0, 1])."""
    wrong, predictions, probabilities = misclassified(model, images, labels)
    if display is None:
        shown = np.stack([_unit(images[i]) for i in wrong[:max_images]]) if len(wrong) else []
    else:
        shown = np.asarray(display)[wrong[:max_images]]
    fig = misclassified_figure(
        shown,
        np.asarray(labels)[wrong],
        predictions,
        probabilities,
        class_names,
        total=len(wrong),
        max_images=max_images,
    )
    return save_figure(fig, path, svg)


def plot_run(run_dir: PathLike, model: Module | None = None, svg: bool = False) -> list[Path]:
    """What `cnnkit train --plots` writes into a run directory: curves.png, confusion.png and
    (given the model) filters.png of its first conv layer."""
    run_dir = Path(run_dir)
    metrics = load_metrics(run_dir)
    written = plot_curves(metrics, run_dir / "curves.png", svg)
    written += plot_confusion_matrix(metrics, run_dir / "confusion.png", svg=svg)
    if model is not None and conv_layer_names(model):
        written += plot_filters(model, run_dir / "filters.png", svg=svg)
    return written
