"""cnnkit.viz, `cnnkit plot` and `cnnkit train --plots --tensorboard`: the pictures and the maths.

One short LeNet-5 run on the bundled digits (module fixture) feeds every test. Each picture is
checked twice: the PNG opens with the size its figure promises (figsize x dpi), and the numbers
behind it equal an independent computation (the backward pass run by hand, the model split at
the layer, finite differences, PyTorch's interpolation, the run's history).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import struct
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="cnnkit.viz needs matplotlib (the viz extra)")
from PIL import Image  # noqa: E402

from cnnkit import models, viz  # noqa: E402
from cnnkit.cli import main  # noqa: E402
from cnnkit.cli.checkpoint import restore_model  # noqa: E402
from cnnkit.data import load_digits  # noqa: E402
from cnnkit.nn import Sequential  # noqa: E402

TRAIN = ["train", "--model", "lenet5", "--epochs", "2", "--batch-size", "64", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """`cnnkit train --plots --tensorboard` on digits: LeNet-5, two epochs."""
    out = tmp_path_factory.mktemp("vizrun")
    tensorboard = ["--tensorboard"] if importlib.util.find_spec("tensorboardX") else []
    assert main([*TRAIN, "--out", str(out), "--plots", *tensorboard]) == 0
    return out


@pytest.fixture(scope="module")
def trained(run_dir):
    """(model in eval mode, data metadata, normalised test images, raw test images, labels)."""
    model, _, data = restore_model(str(run_dir / "checkpoint.npz"))
    test = load_digits().test
    mean, std = data["mean"][0], data["std"][0]
    x = ((test.images - mean) / std).astype(np.float32)
    return model, data, x, test.images, test.labels


@pytest.fixture(scope="module")
def double(trained):
    """The trained model and the test images in float64, for comparisons to ~1e-12."""
    model = trained[0]
    model64 = models.get(**{**model.config, "dtype": "float64"})
    model64.load_state_dict(model.state_dict())
    return model64.eval(), trained[2].astype(np.float64)


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


def expected_pixels(fig) -> tuple[int, int]:
    width, height = fig.get_size_inches()
    return round(width * viz.DPI), round(height * viz.DPI)


def assert_readable(fig) -> None:
    """A title, labelled axes on every plot panel, a legend wherever lines are several."""
    titles = [ax.get_title() for ax in fig.axes] + [fig.get_suptitle()]
    assert any(titles), "figure without a title"
    for ax in fig.axes:
        if not ax.get_visible() or not (ax.images or ax.lines) or ax.get_label() == "<colorbar>":
            continue
        if ax.get_xticks().size:  # panels that show coordinates say what they are
            twin = len(ax.get_shared_x_axes().get_siblings(ax)) > 1
            assert (ax.get_xlabel() or twin) and ax.get_ylabel(), ax.get_title()
    for ax in fig.axes:
        lines = [line for line in ax.lines if not line.get_label().startswith("_")]
        if len(lines) > 1:
            assert ax.get_legend() is not None, ax.get_title()


def assert_one_line_error(capsys, status: int, *fragments: str) -> None:
    captured = capsys.readouterr()
    assert status == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def onehot_backward(model, x, classes):
    """dS/dx by hand: eval-mode forward, then backward of dL/dlogits = onehot(classes)."""
    model.eval()
    logits = model(x)
    dlogits = np.zeros_like(logits)
    dlogits[np.arange(len(x)), classes] = 1
    return logits, model.backward(dlogits)


# ---------------------------------------------------------------------------------------------
# train --plots and --tensorboard
# ---------------------------------------------------------------------------------------------


def test_train_plots_writes_readable_pngs_into_the_run(run_dir, trained):
    model = trained[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    figures = {
        "curves.png": viz.curves_figure(metrics),
        "confusion.png": viz.confusion_figure(metrics["confusion_matrix"]),
        "filters.png": viz.filters_figure(viz.filters(model), "features.0"),
    }
    for name, fig in figures.items():
        assert png_size(run_dir / name) == expected_pixels(fig), name
        assert_readable(fig)
    assert png_size(run_dir / "curves.png") == (1100, 420)
    assert png_size(run_dir / "confusion.png") == (850, 750)


def read_events(folder) -> dict[str, list]:
    """Every summary value of the tensorboardX event files (TFRecord framing) by tag."""
    from tensorboardX.proto import event_pb2

    found: dict[str, list] = {}
    for path in glob.glob(str(folder / "events.out.tfevents.*")):
        data = open(path, "rb").read()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                payload = value.simple_value if kind == "simple_value" else kind
                found.setdefault(value.tag, []).append((event.step, payload))
    return found


def test_tensorboard_logs_scalars_histograms_and_filters(run_dir, trained):
    pytest.importorskip("tensorboardX")
    model = trained[0]
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    events = read_events(run_dir / "tensorboard")
    for key, tag in [
        ("loss", "loss/train"),
        ("val_loss", "loss/val"),
        ("lr", "lr"),
        ("accuracy", "accuracy/train"),
        ("val_accuracy", "accuracy/val"),
    ]:
        steps, values = zip(*events[tag], strict=True)
        assert steps == (1, 2)
        np.testing.assert_allclose(values, [h[key] for h in history], rtol=1e-6)
    for name, _ in model.named_parameters():
        assert [kind for _, kind in events[f"weights/{name}"]] == ["histo", "histo"]
        assert [kind for _, kind in events[f"gradients/{name}"]] == ["histo", "histo"]
    assert [kind for _, kind in events["filters/features.0"]] == ["image", "image"]


def test_tensorboard_leaves_out_what_a_diverging_step_cannot_log(tmp_path):
    """lr 1e30: one step sends the weights past 1e20 and the validation loss to NaN."""
    pytest.importorskip("tensorboardX")
    out = tmp_path / "diverged"
    argv = ["train", "--limit", "16", "--epochs", "1", "--lr", "1e30", "--no-progress"]
    assert main([*argv, "--out", str(out), "--tensorboard"]) == 0
    events = read_events(out / "tensorboard")
    assert "loss/train" in events and "loss/val" not in events
    assert "weights/features.0.weight" not in events and "gradients/features.0.weight" in events


def test_binnable_is_what_tensorboardx_default_buckets_hold(tmp_path):
    """binnable says yes exactly where tensorboardX's add_histogram succeeds on finite values."""
    pytest.importorskip("tensorboardX")
    from tensorboardX import SummaryWriter

    from cnnkit.tensorboard import binnable

    writer = SummaryWriter(str(tmp_path))
    cases = {(0.5, -2.0): True, (1e30, 3.0): True, (1e30, -1e30): False, (2e20, 5e25): False}
    for values, expected in cases.items():
        values = np.array(values, np.float32)
        assert binnable(values) is expected, values
        if expected:
            writer.add_histogram("t", values, 0)
        else:
            with pytest.raises(ValueError, match="histogram is empty"):
                writer.add_histogram("t", values, 0)
    writer.close()
    assert not binnable(np.array([np.nan, 1.0])) and not binnable(np.array([np.inf, 1.0]))


def test_train_refuses_to_start_without_the_optional_packages(
    run_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    status = main([*TRAIN, "--out", str(tmp_path / "a"), "--plots"])
    assert_one_line_error(capsys, status, "matplotlib", "pip install 'cnnkit[viz]'")
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    status = main([*TRAIN, "--out", str(tmp_path / "b"), "--tensorboard"])
    assert_one_line_error(capsys, status, "tensorboardX", "pip install 'cnnkit[tensorboard]'")
    assert not list(tmp_path.glob("*/checkpoint.npz"))  # failed before training
    status = main(["plot", "curves", str(run_dir)])
    assert_one_line_error(capsys, status, "cnnkit plot: error:", "cnnkit[viz]")


# ---------------------------------------------------------------------------------------------
# Training curves and confusion matrix: the numbers of the run
# ---------------------------------------------------------------------------------------------


def test_curves_plot_the_history_with_lr_on_a_secondary_axis(run_dir):
    metrics = viz.load_metrics(run_dir)
    history = metrics["history"]
    fig = viz.curves_figure(run_dir)
    loss_ax, acc_ax, lr_ax = fig.axes
    lines = {(ax, line.get_label()): line for ax in fig.axes for line in ax.lines}
    for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        np.testing.assert_array_equal(lines[ax, "train"].get_xdata(), [1, 2])
        np.testing.assert_array_equal(lines[ax, "train"].get_ydata(), [h[key] for h in history])
        np.testing.assert_array_equal(
            lines[ax, "validation"].get_ydata(), [h[f"val_{key}"] for h in history]
        )
    np.testing.assert_array_equal(
        lines[lr_ax, "learning rate"].get_ydata(), [h["lr"] for h in history]
    )
    assert lr_ax.get_ylabel() == "learning rate"
    assert lr_ax.bbox.bounds == loss_ax.bbox.bounds  # twin of the loss panel
    legend = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert legend == ["train", "validation", "learning rate"]
    assert "lenet5 on digits" in fig.get_suptitle()
    assert_readable(fig)


def test_curves_from_a_bare_history_without_validation():
    history = [
        {"epoch": 1, "loss": 2.0, "accuracy": 0.3},
        {"epoch": 2, "loss": 1.0, "accuracy": 0.6},
    ]
    fig = viz.curves_figure(history)
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in acc_ax.lines] == ["train"]
    assert acc_ax.get_legend() is None and loss_ax.get_legend() is None  # one series each
    with pytest.raises(viz.VizError, match="history is empty"):
        viz.curves_figure([])


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix_counts_or_rows_summing_to_one(run_dir, normalize):
    metrics = viz.load_metrics(run_dir)
    counts = np.array(metrics["confusion_matrix"])
    fig = viz.confusion_figure(counts, metrics["class_names"], normalize=normalize)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    if normalize:
        np.testing.assert_allclose(shown.sum(axis=1), 1.0)
        np.testing.assert_allclose(shown * counts.sum(axis=1, keepdims=True), counts)
    else:
        np.testing.assert_array_equal(shown, counts)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 100
    assert texts[0] == (f"{counts[0, 0] / counts[0].sum():.2f}" if normalize else str(counts[0, 0]))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == metrics["class_names"]
    assert fig.axes[0].get_xlabel() == "predicted class"
    assert fig.axes[0].get_ylabel() == "true class"
    assert_readable(fig)


def test_normalize_confusion_keeps_empty_rows_at_zero():
    rows = viz.normalize_confusion([[2, 2], [0, 0]])
    np.testing.assert_array_equal(rows, [[0.5, 0.5], [0.0, 0.0]])
    with pytest.raises(viz.VizError, match="square"):
        viz.confusion_figure(np.zeros((2, 3)))
    with pytest.raises(viz.VizError, match="3 class names for a 2 x 2"):
        viz.confusion_figure(np.eye(2), ["a", "b", "c"])


# ---------------------------------------------------------------------------------------------
# Filters and feature maps: the weights and the layer's forward output
# ---------------------------------------------------------------------------------------------


def test_first_layer_filters_are_the_conv_weights(trained):
    model = trained[0]
    weights = model.features[0].weight.data
    np.testing.assert_array_equal(viz.filters(model), weights)
    np.testing.assert_array_equal(viz.filters(model, "features.0"), weights)
    fig = viz.filters_figure(weights, "features.0")
    grid = np.asarray(fig.axes[0].images[0].get_array().filled(np.nan))
    count = np.count_nonzero(~np.isnan(grid))
    zoom = math.isqrt(count // weights.size)
    assert zoom * zoom * weights.size == count
    np.testing.assert_array_equal(grid[: 5 * zoom : zoom, : 5 * zoom : zoom], weights[0, 0])
    vmin, vmax = fig.axes[0].images[0].get_clim()
    assert vmin == -vmax == -np.abs(weights).max()  # one symmetric scale: grey = 0
    assert_readable(fig)


def test_deeper_layer_filters_show_filter_by_input_channel_slices(trained):
    model = trained[0]
    fig = viz.filters_figure(viz.filters(model, "features.3"), "features.3")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "input channel"
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in range(6)]
    assert "16 x 6 x 5 x 5" in fig.get_suptitle()


def test_rgb_filters_are_drawn_in_colour(tmp_path):
    model = models.get("small_cnn", in_channels=3, seed=1)
    (path,) = viz.plot_filters(model, tmp_path / "rgb.png")
    fig = viz.filters_figure(viz.filters(model))
    assert png_size(path) == expected_pixels(fig)
    grid = np.asarray(fig.axes[0].images[0].get_array())
    assert grid.shape[-1] == 3 and grid.min() >= 0 and grid.max() <= 1
    pixels = np.asarray(Image.open(path).convert("RGB"), np.int16)
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    assert (spread > 60).mean() > 0.05  # many clearly coloured pixels, not grey


def test_filter_grid_for_tensorboard():
    weights = np.zeros((4, 1, 3, 3))
    weights[0, 0, 0, 0], weights[1, 0, 1, 1] = 1.0, -1.0
    grid = viz.filter_grid(weights, min_tile=3)
    assert grid.shape == (7, 7, 3)  # 2 x 2 tiles of 3 px, one px apart
    assert grid[0, 0, 0] == 1.0 and grid[1, 5, 0] == 0.0 and grid[1, 1, 0] == 0.5


def test_feature_maps_equal_the_layer_forward_output(trained, double, tmp_path):
    model64, x64 = double
    expected = model64.features[:4](x64[:3])  # the model cut after features.3
    np.testing.assert_array_equal(viz.feature_maps(model64, x64[:3], "features.3"), expected)
    np.testing.assert_allclose(
        viz.feature_maps(model64, x64[1], "features.3"), expected[1], rtol=1e-12, atol=1e-14
    )
    model, _, x, raw, _ = trained
    one = viz.feature_maps(model, x[1], "features.3")
    np.testing.assert_allclose(one, expected[1], rtol=1e-4, atol=1e-5)  # float32 model
    fig = viz.feature_maps_figure(one, "features.3", raw[1])
    grid = np.asarray(fig.axes[1].images[0].get_array().filled(np.nan))
    zoom = math.isqrt(np.count_nonzero(~np.isnan(grid)) // one.size)
    h, w = one.shape[1:]
    np.testing.assert_array_equal(grid[: h * zoom : zoom, : w * zoom : zoom], one[0])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), raw[1, 0])
    assert_readable(fig)
    (path,) = viz.plot_feature_maps(model, x[1], "features.3", tmp_path / "fm.png", raw[1])
    assert png_size(path) == expected_pixels(fig)


# ---------------------------------------------------------------------------------------------
# Saliency and Grad-CAM: gradients of the class score
# ---------------------------------------------------------------------------------------------


def test_saliency_is_the_max_abs_input_gradient_of_the_backward_pass(double):
    model, x = double
    batch = x[:5]
    classes = np.array([0, 3, 9, 9, 1])
    _, dx = onehot_backward(model, batch, classes)
    np.testing.assert_array_equal(viz.input_gradient(model, batch, classes), dx)
    np.testing.assert_array_equal(viz.saliency(model, batch, classes), np.abs(dx).max(axis=1))
    np.testing.assert_allclose(
        viz.saliency(model, batch[2], 9), np.abs(dx[2]).max(axis=0), rtol=1e-12, atol=1e-15
    )
    predicted = model(batch).argmax(axis=1)
    _, dx_predicted = onehot_backward(model, batch, predicted)
    np.testing.assert_array_equal(viz.saliency(model, batch), np.abs(dx_predicted).max(axis=1))


def test_colour_saliency_takes_the_max_over_channels():
    model = models.get("lenet5", in_channels=3, input_size=8, dtype="float64", seed=3)
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8))
    _, dx = onehot_backward(model, x, [1, 6])
    sal = viz.saliency(model, x, [1, 6])
    np.testing.assert_array_equal(sal, np.abs(dx).max(axis=1))
    assert sal.shape == (2, 8, 8) and not np.allclose(sal, np.abs(dx).mean(axis=1))


def test_input_gradient_matches_finite_differences(double):
    double, x = double[0], double[1][7]
    grad = viz.input_gradient(double, x, 4)
    eps = 1e-6
    for index in [(0, 0, 0), (0, 2, 3), (0, 4, 4), (0, 5, 1), (0, 7, 6)]:
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (double(up[None])[0, 4] - double(down[None])[0, 4]) / (2 * eps)
        assert abs(numeric - grad[index]) < 1e-6 * max(1.0, abs(numeric)), index


def test_diagnostics_leave_the_model_as_they_found_it(trained):
    model, _, x, _, _ = trained
    model.train()
    for p in model.parameters():
        p.grad[...] = 0.5
    before = [p.grad for p in model.parameters()]
    viz.saliency(model, x[:2])
    viz.grad_cam(model, x[:2], "features.3")
    viz.feature_maps(model, x[:2], "features.0")
    assert all(module.training for module in model.modules())
    assert all(
        p.grad is g and np.all(g == 0.5) for p, g in zip(model.parameters(), before, strict=True)
    )
    assert all(
        "forward" not in m.__dict__ and "backward" not in m.__dict__ for m in model.modules()
    )
    model.eval()
    model.zero_grad()


def test_grad_cam_weights_are_the_spatial_mean_of_the_layer_gradient(double):
    model, x = double
    batch, classes = x[10:14], np.array([2, 5, 5, 8])
    head = model.features[:4]  # up to and including conv features.3
    tail = Sequential(*model.features[4:], model.flatten, model.classifier)
    activation = head(batch)
    logits = tail(activation)
    np.testing.assert_allclose(logits, model(batch), rtol=1e-12)
    dlogits = np.zeros_like(logits)
    dlogits[np.arange(4), classes] = 1
    dA = tail.backward(dlogits)
    weights = dA.mean(axis=(2, 3))
    cam = np.maximum(np.einsum("nk,nkhw->nhw", weights, activation), 0)
    got_cam, got_weights = viz.grad_cam(model, batch, "features.3", classes)
    np.testing.assert_allclose(got_weights, weights, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got_cam, cam, rtol=1e-12, atol=1e-15)
    one_cam, one_weights = viz.grad_cam(model, batch[1], "features.3", 5)
    np.testing.assert_allclose(one_weights, weights[1], rtol=1e-12, atol=1e-15)
    assert one_cam.shape == activation.shape[2:]


def test_grad_cam_through_residual_and_separable_blocks():
    model = models.get("mini_xception", num_classes=3, input_size=16, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 1, 16, 16)).astype(np.float32)
    layer = viz.conv_layer_names(model)[-1]
    assert "depthwise" not in layer and layer.startswith("block4.rep")
    cam, weights = viz.grad_cam(model, x, layer, [0, 2])
    assert cam.shape[0] == 2 and cam.min() >= 0 and weights.shape[0] == 2
    assert viz.filters(model, layer).shape[1:] == (1, 3, 3)  # depthwise filters


def test_upsample_is_torch_bilinear():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for shape, size in [((4, 4), (8, 8)), ((3, 5), (7, 11)), ((2, 2), (28, 28))]:
        a = rng.standard_normal(shape)
        expected = torch.nn.functional.interpolate(
            torch.tensor(a)[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0].numpy()
        np.testing.assert_allclose(viz.upsample(a, size), expected, rtol=1e-12, atol=1e-12)


def test_saliency_and_grad_cam_figures_show_the_maps(trained, tmp_path):
    model, data, x, raw, _ = trained
    sal = viz.saliency(model, x[0], 3)
    fig = viz.saliency_figure(raw[0], sal, "Saliency")
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), sal)
    assert_readable(fig)
    (path,) = viz.plot_saliency(model, x[0], tmp_path / "s.png", 3, data["class_names"], raw[0])
    assert png_size(path) == (1050, 380)
    cam, _ = viz.grad_cam(model, x[0], "features.3", 3)
    fig = viz.grad_cam_figure(raw[0], cam, "Grad-CAM")
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), cam)
    (overlay,) = [ax for ax in fig.axes if ax.get_title() == "upsampled over the input"]
    np.testing.assert_allclose(
        overlay.images[1].get_array(), viz.analysis._unit(viz.upsample(cam, (8, 8)))
    )
    assert_readable(fig)
    (path,) = viz.plot_grad_cam(model, x[0], "features.3", tmp_path / "g.png", image=raw[0])
    assert png_size(path) == (1050, 380)


def test_unknown_layers_and_classes_are_explained(trained):
    model, _, x, _, _ = trained
    with pytest.raises(
        viz.VizError,
        match=r"unknown layer 'conv9'; conv layers of LeNet5: "
        r"features\.0, features\.3$",
    ):
        viz.grad_cam(model, x[0], "conv9")
    with pytest.raises(viz.VizError, match="Grad-CAM needs a layer with .* shape \\(1, 120\\)"):
        viz.grad_cam(model, x[0], "classifier.0")
    with pytest.raises(viz.VizError, match="'classifier.0' \\(Linear\\) has no convolution"):
        viz.filters(model, "classifier.0")
    with pytest.raises(viz.VizError, match="target class 10 is out of range .* 10 classes"):
        viz.saliency(model, x[0], 10)
    with pytest.raises(viz.VizError, match="expected one image"):
        viz.saliency(model, x[0, 0])


# ---------------------------------------------------------------------------------------------
# Misclassified images
# ---------------------------------------------------------------------------------------------


def test_misclassified_are_the_wrong_predictions_most_confident_first(trained, tmp_path):
    model, data, x, raw, labels = trained
    model.eval()
    logits = model(x)
    predictions = logits.argmax(axis=1)
    wrong, predicted, probabilities = viz.misclassified(model, x, labels, batch_size=100)
    assert sorted(wrong) == list(np.flatnonzero(predictions != labels))
    np.testing.assert_array_equal(predicted, predictions[wrong])
    confidence = probabilities[np.arange(len(wrong)), predicted]
    assert np.all(np.diff(confidence) <= 0)
    np.testing.assert_allclose(probabilities, viz.softmax(logits[wrong]), rtol=1e-6)
    names = data["class_names"]
    fig = viz.misclassified_figure(
        raw[wrong], labels[wrong], predicted, probabilities, names, total=len(wrong), max_images=12
    )
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert len(titles) == min(12, len(wrong))
    assert titles[0] == (
        f"true {names[labels[wrong[0]]]}\npred {names[predicted[0]]} ({confidence[0]:.2f})"
    )
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), raw[wrong[0], 0])
    assert f"of {len(wrong)}" in fig.get_suptitle()
    (path,) = viz.plot_misclassified(model, x, labels, tmp_path / "m.png", names, raw, 12)
    assert png_size(path) == expected_pixels(fig)


# ---------------------------------------------------------------------------------------------
# Files: PNG size, SVG, no display
# ---------------------------------------------------------------------------------------------


def test_svg_on_request_and_paths(run_dir, tmp_path):
    written = viz.plot_curves(run_dir / "metrics.json", tmp_path / "deep" / "c.png", svg=True)
    assert written == [tmp_path / "deep" / "c.png", tmp_path / "deep" / "c.svg"]
    assert png_size(written[0]) == (1100, 420)
    svg = written[1].read_text()
    assert svg.startswith("<?xml") and "<svg" in svg and "Training curves" in svg
    assert viz.plot_confusion_matrix(run_dir, tmp_path / "x.svg") == [
        tmp_path / "x.png",
        tmp_path / "x.svg",
    ]


def test_drawing_needs_no_display_and_leaves_pyplot_alone(tmp_path):
    code = (
        "import sys, cnnkit.viz as v\n"
        "v.plot_confusion_matrix([[3, 1], [0, 4]], 'c.png', ['a', 'b'], normalize=True)\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {"PATH": "/usr/bin:/bin", "MPLBACKEND": "TkAgg", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert png_size(tmp_path / "c.png") == (600, 500)


def test_missing_matplotlib_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(viz.MissingDependency, match=r"^plots need matplotlib, .*cnnkit\[viz\]"):
        viz.curves_figure([{"epoch": 1, "loss": 1.0}])
    np.testing.assert_array_equal(viz.normalize_confusion([[1, 1]]), [[0.5, 0.5]])  # maths works


# ---------------------------------------------------------------------------------------------
# cnnkit plot ...
# ---------------------------------------------------------------------------------------------


def digit_png(folder, index: int = 0):
    from sklearn.datasets import load_digits as sk_digits

    pixels = (sk_digits().images[index] * 255 / 16).astype(np.uint8)
    path = folder / f"digit{index}.png"
    Image.fromarray(pixels).save(path)
    return path


def test_cli_plot_every_kind(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    checkpoint = ["--checkpoint", str(run_dir / "checkpoint.npz")]
    image = str(digit_png(tmp_path))
    commands = {
        "curves.png": ["curves", str(run_dir), "--out", "curves.png"],
        "confusion.png": [
            "confusion",
            str(run_dir / "metrics.json"),
            "--normalize",
            "--out",
            "confusion.png",
        ],
        "filters-features.0.png": ["filters", *checkpoint],
        "filters-features.3.png": ["filters", *checkpoint, "--layer", "features.3", "--svg"],
        "features-features.0-digit0.png": ["features", *checkpoint, "--layer", "features.0", image],
        "saliency-test5.png": ["saliency", *checkpoint, "--test-index", "5", "--class", "7"],
        "gradcam-features.3-digit0.png": ["gradcam", *checkpoint, image],
        "gc.png": ["gradcam", *checkpoint, "--layer", "features.0", image, "--out", "gc.png"],
        "misclassified.png": ["misclassified", *checkpoint, "--max-images", "8"],
    }
    for name, argv in commands.items():
        assert main(["plot", *argv]) == 0, argv
        out = capsys.readouterr().out
        assert f"wrote {name}" in out, out
        width, height = png_size(tmp_path / name)
        assert 300 <= width <= 1400 and 300 <= height <= 1200, (name, width, height)
    assert (tmp_path / "filters-features.3.svg").exists()
    assert png_size("curves.png") == (1100, 420)
    assert main(["plot", "curves", str(run_dir / "metrics.json"), "--out", "sub/c"]) == 0
    assert png_size(tmp_path / "sub" / "c.png") == (1100, 420)


def test_cli_plot_defaults_into_the_run_directory(tmp_path, run_dir, capsys):
    run = tmp_path / "copy"
    run.mkdir()
    (run / "metrics.json").write_text((run_dir / "metrics.json").read_text())
    assert main(["plot", "confusion", str(run)]) == 0
    assert main(["plot", "curves", str(run / "metrics.json")]) == 0
    assert capsys.readouterr().out.split() == [
        "wrote",
        str(run / "confusion.png"),
        "wrote",
        str(run / "curves.png"),
    ]


def test_cli_plot_errors_are_one_line(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    checkpoint = ["--checkpoint", str(run_dir / "checkpoint.npz")]
    cases = [
        (
            ["gradcam", *checkpoint, "--layer", "conv9", "--test-index", "0"],
            ["unknown layer 'conv9'", "features.0, features.3"],
        ),
        (
            ["features", *checkpoint, "--layer", "classifier.0", "--test-index", "0"],
            ["not feature maps", "features.0"],
        ),
        (["filters", *checkpoint, "--layer", "classifier.2"], ["has no convolution filters"]),
        (
            ["saliency", *checkpoint, "--test-index", "0", "--class", "eleven"],
            ["unknown class 'eleven'", "0..9"],
        ),
        (["saliency", *checkpoint], ["exactly one of IMAGE and --test-index"]),
        (["saliency", *checkpoint, "x.png", "--test-index", "1"], ["exactly one of"]),
        (["saliency", *checkpoint, "missing.png"], ["image missing.png does not exist"]),
        (["saliency", *checkpoint, "--test-index", "100000"], ["out of range", "359 images"]),
        (["curves", str(tmp_path)], ["no metrics.json in"]),
        (["confusion", str(tmp_path / "nope.json")], ["nope.json does not exist"]),
        (["filters", "--checkpoint", str(tmp_path / "none.npz")], ["none.npz"]),
    ]
    for argv, fragments in cases:
        status = main(["plot", *argv])
        assert_one_line_error(capsys, status, "cnnkit plot: error:", *fragments)
    assert list(tmp_path.iterdir()) == []  # nothing written by a failed command
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", "sideways"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("kind", [None, *__import__("cnnkit.cli.plot").cli.plot.PLOT_KINDS])
def test_cli_plot_help(kind, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", "--help"] if kind is None else ["plot", kind, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cnnkit plot" + ("" if kind is None else f" {kind}") in capsys.readouterr().out
