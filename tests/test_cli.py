"""The `cnnkit` command: a train-evaluate-predict round trip and every error path."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main

COMMANDS = ["train", "evaluate", "predict", "summary", "gradcheck", "models", "datasets"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One short digits run shared by the tests that need a checkpoint."""
    out = tmp_path_factory.mktemp("run")
    status = main(["train", "--epochs", "1", "--out", str(out), "--no-progress"])
    assert status == 0
    return out


def assert_one_line_error(capsys, status: int, *fragments: str) -> None:
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_idx(folder, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    header = struct.pack(">4i", 2051, n, h, w)
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header + images.astype(np.uint8).tobytes())
    )
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(struct.pack(">2i", 2049, n) + labels.astype(np.uint8).tobytes())
    )


def test_train_writes_metrics_and_checkpoint(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert {"test_accuracy", "test_loss", "history", "elapsed_seconds"} <= set(metrics)
    assert len(metrics["history"]) == 1
    assert 0.5 < metrics["test_accuracy"] <= 1.0
    assert (trained_run / "checkpoint.npz").exists()


def test_evaluate_reports_the_same_accuracy(trained_run, capsys):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    status = main(["evaluate", "--checkpoint", str(trained_run / "checkpoint.npz")])
    out = capsys.readouterr().out
    assert status == 0
    assert f"accuracy {metrics['test_accuracy']:.4f}" in out


def test_predict_images_and_folders(trained_run, tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"digit{i}.png")
    checkpoint = str(trained_run / "checkpoint.npz")
    status = main(["predict", "--checkpoint", checkpoint, str(folder), "--top-k", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0
    assert len(lines) == 3
    for line in lines:
        ranked = line.split(": ", 1)[1].split(", ")
        assert len(ranked) == 3
        probabilities = [float(item.split()[1]) for item in ranked]
        assert probabilities == sorted(probabilities, reverse=True)


def test_summary_models_datasets_and_gradcheck(capsys):
    assert main(["summary", "--model", "lenet5"]) == 0
    assert "Total params: 61,706" in capsys.readouterr().out
    assert main(["models"]) == 0
    assert "xception" in capsys.readouterr().out
    assert main(["datasets"]) == 0
    assert "mnist-small" in capsys.readouterr().out
    assert main(["gradcheck", "--model", "small_cnn", "--input-shape", "1,8,8"]) == 0
    assert "gradcheck passed" in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cnnkit " + command in capsys.readouterr().out


def test_python_m_cnnkit_is_the_cnnkit_command():
    module = subprocess.run(
        [sys.executable, "-m", "cnnkit", "--help"], capture_output=True, text=True
    )
    script = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cnnkit.cli import main; sys.exit(main())",
            "--help",
        ],
        capture_output=True,
        text=True,
    )
    assert module.returncode == script.returncode == 0
    assert module.stdout.replace("__main__.py", "cnnkit") == script.stdout


def test_unknown_model(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "alexnet"])
    assert_one_line_error(capsys, exit_info.value.code, "unknown model 'alexnet'", "lenet5")


def test_unknown_dataset(tmp_path, capsys):
    status = main(["train", "--dataset", "imagenet", "--out", str(tmp_path / "r")])
    assert_one_line_error(capsys, status, "unknown data set 'imagenet'")


def test_missing_data_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CNNKIT_DATA", raising=False)
    status = main(["train", "--dataset", "mnist", "--out", str(tmp_path / "r")])
    assert_one_line_error(capsys, status, "no data directory", "CNNKIT_DATA")


def test_corrupt_data_file(tmp_path, capsys):
    folder = tmp_path / "data" / "mnist"
    write_idx(folder, "train", np.zeros((4, 28, 28)), np.arange(4))
    write_idx(folder, "t10k", np.zeros((2, 28, 28)), np.arange(2))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x04junk"))
    status = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert_one_line_error(capsys, status, "train-images-idx3-ubyte.gz")


def test_wrong_image_size_for_the_checkpoint(trained_run, tmp_path, capsys):
    folder = tmp_path / "data" / "mnist-small"
    write_idx(folder, "train", np.zeros((4, 28, 28)), np.arange(4))
    write_idx(folder, "t10k", np.zeros((2, 28, 28)), np.arange(2))
    status = main(
        [
            "evaluate",
            "--checkpoint",
            str(trained_run / "checkpoint.npz"),
            "--dataset",
            "mnist-small",
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    assert_one_line_error(capsys, status, "images of shape (1, 28, 28)", "expects (1, 8, 8)")


def test_unreadable_image(trained_run, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    status = main(["predict", "--checkpoint", str(trained_run / "checkpoint.npz"), str(bad)])
    assert_one_line_error(capsys, status, "cannot read image", "broken.png")


def test_missing_image(trained_run, tmp_path, capsys):
    status = main(
        ["predict", "--checkpoint", str(trained_run / "checkpoint.npz"), str(tmp_path / "none.png")]
    )
    assert_one_line_error(capsys, status, "none.png does not exist")


def test_missing_checkpoint(tmp_path, capsys):
    status = main(["evaluate", "--checkpoint", str(tmp_path / "none.npz")])
    assert_one_line_error(capsys, status, "none.npz does not exist")


def test_checkpoint_from_another_model(trained_run, tmp_path, capsys):
    status = main(
        [
            "train",
            "--model",
            "lenet5",
            "--epochs",
            "2",
            "--no-progress",
            "--resume",
            str(trained_run / "checkpoint.npz"),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert_one_line_error(capsys, status, "holds model 'small_cnn'", "'lenet5'")


def test_output_directory_not_writable(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    status = main(["train", "--out", str(blocker / "run")])
    assert_one_line_error(capsys, status, "output directory", "is not writable")
    assert blocker.read_text() == "keep me"


def test_existing_run_is_not_overwritten(trained_run, capsys):
    before = (trained_run / "checkpoint.npz").read_bytes()
    status = main(["train", "--out", str(trained_run), "--epochs", "1"])
    assert_one_line_error(capsys, status, "already holds a run", "--overwrite")
    assert (trained_run / "checkpoint.npz").read_bytes() == before


def test_bad_option_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epochs", "0"])
    assert_one_line_error(
        capsys, exit_info.value.code, "--epochs", "expected an integer >= 1, got '0'"
    )


def test_label_smoothing_and_threads_reach_the_training_loop(tmp_path):
    out = tmp_path / "smooth"
    argv = ["train", "--epochs", "1", "--label-smoothing", "0.5", "--threads", "1"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # With eps = 0.5 over 10 classes the target puts 0.55 on the label and 0.05 elsewhere, so the
    # loss can never fall below that distribution's entropy.
    q = np.array([0.55] + [0.05] * 9)
    assert metrics["history"][0]["loss"] >= -(q * np.log(q)).sum()
    assert metrics["settings"]["label_smoothing"] == 0.5
