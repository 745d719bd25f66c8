"""ONNX on the command line: `cnnkit export`, `predict --onnx`, `summary --onnx`, `plot ... --onnx`
and `explore --onnx`; the files written equal the checkpoint to onnxruntime, what cnnkit.onnx.inputs
infers about a foreign model, and every message."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from onnx_support import onnx, run_ort, torch_to_onnx
from PIL import Image

from cnnkit.cli import main
from cnnkit.cli.checkpoint import normalize, restore_model
from cnnkit.cli.images import read_image
from cnnkit.explore import source
from cnnkit.explore.source import ExploreError
from cnnkit.imagenet import class_names
from cnnkit.onnx import inputs as onnx_inputs
from cnnkit.onnx import load

torch = pytest.importorskip("torch")


def one_line_error(capsys, status: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    assert status == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A short digits run and its checkpoint exported by `cnnkit export`."""
    out = tmp_path_factory.mktemp("onnx-run")
    assert main(["train", "--epochs", "1", "--out", str(out / "run"), "--no-progress"]) == 0
    checkpoint = out / "run" / "checkpoint.npz"
    assert main(["export", "--checkpoint", str(checkpoint), "--onnx", str(out / "l5.onnx")]) == 0
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        Image.fromarray(pixels).save(out / f"digit{i}.png")
    return out, checkpoint, out / "l5.onnx"


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """A torch.onnx model with 3-channel 16x16 input, 1000 classes and a Softmax at the end,
    a dynamic-size fully convolutional model, and an RGB photo."""
    out = tmp_path_factory.mktemp("foreign")
    torch.manual_seed(0)
    classifier = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 1000),
        torch.nn.Softmax(dim=1),
    )
    (out / "softmax.onnx").write_bytes(torch_to_onnx(classifier, (1, 3, 16, 16)))
    dense = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1))
    model = torch_to_onnx(
        dense,
        (1, 1, 8, 8),
        dynamic_axes={"x": {0: "batch", 2: "h", 3: "w"}, "y": {0: "batch", 2: "h", 3: "w"}},
    )
    (out / "dynamic.onnx").write_bytes(model)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)).save(out / "photo.png")
    return out


def test_export_gives_the_checkpoints_logits_in_onnxruntime(run):
    _, checkpoint, path = run
    model, _, data = restore_model(str(checkpoint))
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    x = np.random.default_rng(2).standard_normal((3, 1, 8, 8)).astype(np.float32)
    (theirs,) = run_ort(proto, x)
    np.testing.assert_allclose(theirs, model(x), rtol=1e-4, atol=1e-5)
    recorded = onnx_inputs.recorded_data({p.key: p.value for p in proto.metadata_props})
    assert recorded["class_names"] == data["class_names"]
    assert recorded["mean"] == pytest.approx(data["mean"])


def test_export_refuses_to_replace_a_file_without_overwrite(run, tmp_path, capsys):
    _, checkpoint, _ = run
    target = tmp_path / "taken.onnx"
    target.write_bytes(b"someone else's")
    argv = ["export", "--checkpoint", str(checkpoint), "--onnx", str(target)]
    one_line_error(capsys, main(argv), "argument --onnx:", "exists; give --overwrite")
    assert target.read_bytes() == b"someone else's"
    assert main([*argv, "--overwrite"]) == 0
    onnx.checker.check_model(onnx.load(str(target)))
    assert [p.name for p in tmp_path.iterdir()] == ["taken.onnx"]  # no temporary file left


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--opset", "12"], "argument --opset: expected an integer in [13, 21], got '12'"),
        (["--opset", "x"], "argument --opset:"),
    ],
)
def test_export_option_errors(run, tmp_path, capsys, extra, fragment):
    _, checkpoint, _ = run
    argv = ["export", "--checkpoint", str(checkpoint), "--onnx", str(tmp_path / "o.onnx")]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *extra])
    one_line_error(capsys, exit_info.value.code, fragment)


def test_export_refuses_a_folder_and_a_broken_checkpoint(run, tmp_path, capsys):
    _, checkpoint, _ = run
    status = main(["export", "--checkpoint", str(checkpoint), "--onnx", str(tmp_path)])
    one_line_error(capsys, status, "is a folder, expected a file name")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(checkpoint.read_bytes()[:3000])
    out = tmp_path / "never.onnx"
    status = main(["export", "--checkpoint", str(broken), "--onnx", str(out)])
    one_line_error(capsys, status, str(broken))
    assert not out.exists()


def test_predict_onnx_equals_predict_checkpoint(run, capsys):
    out, checkpoint, path = run
    images = [str(out / f"digit{i}.png") for i in range(3)]
    assert main(["predict", "--checkpoint", str(checkpoint), "--top-k", "3", *images]) == 0
    from_checkpoint = capsys.readouterr().out
    assert main(["predict", "--onnx", str(path), "--top-k", "3", *images]) == 0
    assert capsys.readouterr().out == from_checkpoint


def test_predict_onnx_of_a_softmax_model_shows_its_probabilities(foreign, capsys):
    path, photo = foreign / "softmax.onnx", foreign / "photo.png"
    assert main(["predict", "--onnx", str(path), str(photo)]) == 0
    line = capsys.readouterr().out.strip()
    graph = load(str(path))
    data = onnx_inputs.describe(graph)
    assert data["crop"] and data["mean"] == list(onnx_inputs.IMAGENET_MEAN)
    x = normalize(read_image(photo, data["image_shape"], crop=True)[None], data)
    (probabilities,) = run_ort(onnx.load(str(path)), x.astype(np.float32))
    best = np.argsort(-probabilities[0], kind="stable")[:5]
    names = class_names()
    expected = ", ".join(f"{names[i]} {probabilities[0, i]:.3f}" for i in best)
    assert line == f"{photo}: {expected}"


def test_predict_onnx_messages(foreign, run, capsys):
    out, _, path = run
    digit = str(out / "digit0.png")
    status = main(["predict", "--onnx", str(foreign / "dynamic.onnx"), digit])
    one_line_error(capsys, status, "has shape ?x1x?x?", "give --input-shape C,H,W")
    status = main(["predict", "--onnx", str(path), "--model", "lenet5", digit])
    one_line_error(capsys, status, "--model, --layout, --flavor and --model-options go with")
    status = main(["predict", "--checkpoint", str(run[1]), "--input-shape", "1,8,8", digit])
    one_line_error(capsys, status, "argument --input-shape: goes with --onnx")
    status = main(["predict", "--onnx", digit, digit])
    one_line_error(capsys, status, "is not an ONNX model")
    status = main(["predict", "--onnx", str(out / "missing.onnx"), digit])
    one_line_error(capsys, status, "does not exist")


def test_predict_onnx_of_a_model_without_class_scores(foreign, run, capsys):
    digit = str(run[0] / "digit0.png")
    argv = ["predict", "--onnx", str(foreign / "dynamic.onnx"), "--input-shape", "1,8,8", digit]
    one_line_error(capsys, main(argv), "gives outputs of shape (1, 2, 8, 8)", "not class scores")


def test_summary_onnx(run, foreign, capsys):
    assert main(["summary", "--onnx", str(run[2])]) == 0
    table = capsys.readouterr().out
    assert "features.0" in table and "Conv2d" in table and "(None, 1, 8, 8)" in table
    dynamic = str(foreign / "dynamic.onnx")
    one_line_error(capsys, main(["summary", "--onnx", dynamic]), "give --input-shape C,H,W")
    assert main(["summary", "--onnx", dynamic, "--input-shape", "1,5,7"]) == 0
    assert "(None, 2, 5, 7)" in capsys.readouterr().out
    status = main(["summary", "--onnx", dynamic, "--num-classes", "3"])
    one_line_error(capsys, status, "argument --num-classes: goes with --model")


def test_summary_needs_exactly_one_model(run, capsys):
    for argv in (["summary"], ["summary", "--model", "lenet5", "--onnx", str(run[2])]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        one_line_error(capsys, exit_info.value.code, "--model", "--onnx")


def test_a_missing_onnx_package_is_one_line(run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cnnkit.onnx", None)
    status = main(["summary", "--onnx", str(run[2])])
    one_line_error(capsys, status, "--onnx needs the onnx package", "pip install 'cnnkit[onnx]'")


def test_plot_features_and_gradcam_of_an_onnx_model(run, foreign, tmp_path, capsys):
    out = tmp_path / "features.png"
    argv = ["plot", "features", "--onnx", str(run[2]), "--test-index", "0", "--layer"]
    assert main([*argv, "features.3", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 100
    out = tmp_path / "gradcam.png"
    argv = ["plot", "gradcam", "--onnx", str(foreign / "softmax.onnx"), str(foreign / "photo.png")]
    assert main([*argv, "--out", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    argv = ["plot", "saliency", "--onnx", str(foreign / "softmax.onnx"), "--test-index", "0"]
    one_line_error(capsys, main(argv), "records no data set", "give an image file")


def test_explore_onnx_subject(run, foreign):
    subject = source.from_onnx(run[2])
    assert subject.dataset == "digits" and subject.test_images is not None
    checkpoint = source.from_checkpoint(run[1])
    x = subject.model_input(subject.test_pixels(0))
    np.testing.assert_allclose(subject.model(x[None]), checkpoint.model(x[None]), rtol=1e-5)
    photo = source.from_onnx(foreign / "softmax.onnx")
    assert photo.crop and photo.input_shape == (3, 16, 16) and len(photo.class_names) == 1000
    with pytest.raises(IndexError, match="there are no test images here: upload or draw"):
        photo.test_pixels(0)
    with pytest.raises(ExploreError, match="is not an ONNX model"):
        source.from_onnx(run[0] / "digit0.png")


def test_explore_onnx_messages(run, capsys):
    digit = str(run[0] / "digit0.png")
    one_line_error(capsys, main(["explore", "--onnx", digit]), "is not an ONNX model")
    status = main(["explore", "--onnx", str(run[2]), "--model", "lenet5"])
    one_line_error(capsys, status, "--onnx goes alone, not with --model, --checkpoint or --run")


def test_recorded_data_ignores_what_is_not_a_description():
    full = {key: 1 for key in onnx_inputs.DATA_FIELDS}
    assert onnx_inputs.recorded_data({onnx_inputs.DATA_KEY: json.dumps(full)}) == full
    for text in ("{", "[1]", json.dumps({"dataset": "digits"})):
        assert onnx_inputs.recorded_data({onnx_inputs.DATA_KEY: text}) is None
    assert onnx_inputs.recorded_data({}) is None


@pytest.mark.parametrize("layer, probabilities", [("Softmax", True), ("LogSoftmax", False)])
def test_gives_probabilities(tmp_path, layer, probabilities):
    model = torch.nn.Sequential(torch.nn.Flatten(), getattr(torch.nn, layer)(dim=1))
    graph = load(torch_to_onnx(model, (1, 2, 2, 2)))
    assert onnx_inputs.gives_probabilities(graph) is probabilities
