"""Matplotlib figures of cnnkit's numbers: curves, filters, feature maps, confusion, saliency, CAM.

Each ``*_figure`` function returns a ``matplotlib.figure.Figure`` (Agg canvas, never pyplot)
built from the arrays of ``cnnkit.viz.analysis``; matplotlib is imported only when one is drawn.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cnnkit.viz.analysis import (
    MissingDependency,
    VizError,
    _filter_tiles,
    _grid_shape,
    _unit,
    mosaic,
    normalize_confusion,
    upsample,
)

DPI = 100
"""Dots per inch of the written PNGs: a figure of w x h inches is (100 w) x (100 h) pixels."""

CURVES_FIGSIZE = (11.0, 4.2)
CONFUSION_MIN_SIDE = 5.0
SALIENCY_FIGSIZE = (10.5, 3.8)
GRAD_CAM_FIGSIZE = (10.5, 3.8)

PathLike = str | os.PathLike


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
