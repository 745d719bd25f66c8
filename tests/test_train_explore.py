"""`cnnkit train --explore`: a real training process serves the explorer on its own run, the
page's weights follow the checkpoints and its curves grow while training goes on."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request

import numpy as np
import pytest
from test_cli_interrupt import cnnkit

from cnnkit import models
from cnnkit.cli import main
from cnnkit.explore import source
from cnnkit.io import save_checkpoint

URL = re.compile(r"explorer at (http://127\.0\.0\.1:\d+/)")


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def read_url(process) -> str:
    line = process.stdout.readline()
    found = URL.search(line)
    assert found, (line, process.stderr.read() if process.poll() is not None else "")
    return found.group(1)


def test_train_explore_serves_the_run_while_it_trains(tmp_path):
    out = tmp_path / "run"
    args = ["--epochs", "3", "--limit", "400", "--batch-size", "8", "--threads", "1"]
    process = cnnkit("train", *args, "--out", str(out), "--explore", "--explore-port", "0")
    try:
        url = read_url(process)
        assert get(url + "api/model")["model"] == "small_cnn"
        seen = []
        while True:
            history = get(url + "api/curves")["history"]
            seen.append(len(history))
            line = process.stdout.readline() if len(history) == 3 else ""
            if "explorer still at" in line:
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.2)
        assert seen == sorted(seen) and seen[-1] == 3
        assert get(url + "api/curves")["finished"] is True
        shown = get(url + "api/run?index=0")["probabilities"]
        trained = source.from_checkpoint(out / "checkpoint.npz")
        x = trained.model_input(trained.test_pixels(0))[None]
        logits = trained.model(x)[0].astype(np.float64)
        expected = np.exp(logits - logits.max())
        np.testing.assert_allclose(shown, expected / expected.sum(), rtol=1e-4, atol=1e-6)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0 and "explorer stopped" in stderr, stderr
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--explore-port", "8001"], "argument --explore-port: goes with --explore, got 8001"),
        (["--explore", "--distributed"], "argument --explore: serves one process's run"),
    ],
)
def test_train_explore_messages(capsys, argv, message):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_subject_of_a_run_loads_its_checkpoint_when_it_appears(tmp_path):
    model = models.get("lenet5", num_classes=10, in_channels=1, input_size=[8, 8], seed=0)
    data = {
        "dataset": "digits",
        "image_shape": [1, 8, 8],
        "class_names": [str(i) for i in range(10)],
        "mean": [0.3],
        "std": [0.2],
    }
    subject = source.from_training(tmp_path, model, data)
    assert subject.refresh() is False  # no checkpoint yet
    for p in model.parameters():
        p.data[...] += 1
    x = subject.model_input(subject.test_pixels(0))[None]
    before = subject.model(x)
    save_checkpoint(tmp_path / "checkpoint.npz", model, {"epoch": 1})
    assert subject.refresh() is True
    np.testing.assert_allclose(subject.model(x), model.eval()(x), rtol=1e-6)
    assert not np.allclose(before, subject.model(x))
