"""Write cnnkit's figures to files: ``plot_*`` builds a figure, saves PNG (and SVG) and closes it.

Each returns the list of written paths; ``plot_run`` draws every picture of a training run folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cnnkit.nn.module import Module
from cnnkit.viz.analysis import (
    VizError,
    _layer_hint,
    _unit,
    class_prediction,
    conv_layer_names,
    feature_maps,
    filters,
    first_conv_name,
    grad_cam,
    misclassified,
    saliency,
)
from cnnkit.viz.figures import (
    DPI,
    PathLike,
    _class_label,
    confusion_figure,
    curves_figure,
    feature_maps_figure,
    filters_figure,
    grad_cam_figure,
    load_metrics,
    misclassified_figure,
    saliency_figure,
)

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


def _explained_image(model: Module, x, target_class, class_names, image):
    """(x as one image, the class explained, its title text, the image to draw: ``image`` or x
    scaled to [0, 1]) for the saliency and Grad-CAM plots."""
    x = _one_image(x)
    target, text = _class_title(model, x, target_class, class_names)
    return x, target, text, _unit(x) if image is None else image


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
    x, target, text, image = _explained_image(model, x, target_class, class_names, image)
    saliency_map = saliency(model, x, target)
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
    x, target, text, image = _explained_image(model, x, target_class, class_names, image)
    cam, _ = grad_cam(model, x, layer_name, target)
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
