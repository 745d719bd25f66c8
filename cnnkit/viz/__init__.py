"""Pictures of what a CNN learns and sees: curves, filters, feature maps, confusion, saliency, CAM.

Three layers, so that the maths can be tested without looking at pixels, one module each:

- ``cnnkit.viz.analysis``, *compute* functions (NumPy only): ``filters``, ``feature_maps``,
  ``input_gradient``, ``saliency``, ``grad_cam``, ``misclassified``, ``normalize_confusion``,
  ``upsample``, ``filter_grid``;
- ``cnnkit.viz.figures``, *figure* functions (``*_figure``) that return a matplotlib Figure
  built from that data;
- ``cnnkit.viz.plots``, *plot* functions (``plot_*``) that build the figure and write a PNG
  (and an SVG on request), returning the list of written paths.

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

from cnnkit.viz.analysis import (
    MissingDependency,
    VizError,
    class_prediction,
    conv_layer_names,
    feature_maps,
    filter_grid,
    filters,
    first_conv_name,
    get_layer,
    grad_cam,
    input_gradient,
    misclassified,
    mosaic,
    normalize_confusion,
    saliency,
    softmax,
    tap,
    upsample,
)
from cnnkit.viz.figures import (
    CONFUSION_MIN_SIDE,
    CURVES_FIGSIZE,
    DPI,
    GRAD_CAM_FIGSIZE,
    SALIENCY_FIGSIZE,
    PathLike,
    confusion_figure,
    curves_figure,
    feature_maps_figure,
    filters_figure,
    grad_cam_figure,
    load_metrics,
    misclassified_figure,
    require_matplotlib,
    saliency_figure,
)
from cnnkit.viz.plots import (
    plot_confusion_matrix,
    plot_curves,
    plot_feature_maps,
    plot_filters,
    plot_grad_cam,
    plot_misclassified,
    plot_run,
    plot_saliency,
    save_figure,
)

__all__ = [
    "CONFUSION_MIN_SIDE",
    "CURVES_FIGSIZE",
    "DPI",
    "GRAD_CAM_FIGSIZE",
    "MissingDependency",
    "PathLike",
    "SALIENCY_FIGSIZE",
    "VizError",
    "class_prediction",
    "confusion_figure",
    "conv_layer_names",
    "curves_figure",
    "feature_maps",
    "feature_maps_figure",
    "filter_grid",
    "filters",
    "filters_figure",
    "first_conv_name",
    "get_layer",
    "grad_cam",
    "grad_cam_figure",
    "input_gradient",
    "load_metrics",
    "misclassified",
    "misclassified_figure",
    "mosaic",
    "normalize_confusion",
    "plot_confusion_matrix",
    "plot_curves",
    "plot_feature_maps",
    "plot_filters",
    "plot_grad_cam",
    "plot_misclassified",
    "plot_run",
    "plot_saliency",
    "require_matplotlib",
    "saliency",
    "saliency_figure",
    "save_figure",
    "softmax",
    "tap",
    "upsample",
]
