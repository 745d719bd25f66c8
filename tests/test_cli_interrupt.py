"""A real `cnnkit train` stopped by SIGINT/SIGTERM resumes bit for bit; one run per --out."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.interrupt import StopSignals
from cnnkit.io import load_checkpoint
from cnnkit.rundir import LOCK_NAME, RunDirectory, RunDirectoryError, is_run_file

REPO = Path(__file__).resolve().parents[1]
# 270 training images in batches of 2: 135 steps an epoch, long enough to be stopped inside one.
# Augmentation and SGD momentum make the data order, the augmentation generators and the
# optimizer state all matter for the result.
TRAIN = ["--epochs", "2", "--limit", "300", "--batch-size", "2", "--optimizer", "sgd"]
TRAIN += ["--momentum", "0.5", "--augment", "shift", "--threads", "1"]


def cnnkit(*args: str, **kwargs) -> subprocess.Popen:
    """A `python -m cnnkit ...` process running this checkout's cnnkit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "cnnkit", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files if k != "__meta__"}


def without_timing(history: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in e.items() if k not in ("seconds", "images_per_second")} for e in history
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(["train", *TRAIN, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_at_a_step_and_resuming_equals_the_uninterrupted_run(
    tmp_path, uninterrupted, signum
):
    out = tmp_path / "run"
    process = cnnkit("train", *TRAIN, "--out", str(out))
    wait_for(out / "checkpoint.npz", process)  # epoch 1 is done: stop inside epoch 2
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    lines = stderr.strip().splitlines()
    name = signal.Signals(signum).name
    assert len(lines) == 2, stderr
    assert lines[0].startswith(f"cnnkit train: interrupted by {name} at epoch 2, step ")
    assert lines[0].endswith(f"of 135; checkpoint {out / 'checkpoint.npz'} holds that point")
    step = int(lines[0].split("step ")[1].split()[0])
    state = load_checkpoint(out / "checkpoint.npz").training_state
    assert state["epoch"] == 1 and state["partial_epoch"]["step"] == step
    assert state["loader"]["epoch"] == 1 and state["loader"]["batch"] == step
    assert not (out / LOCK_NAME).exists() and not (out / "metrics.json").exists()

    prefix = "resume with: cnnkit train "
    assert lines[1].startswith(prefix)
    resume = shlex.split(lines[1][len(prefix) :])
    assert resume[-4:] == ["--out", str(out), "--resume", str(out / "checkpoint.npz")]
    resumed = cnnkit("train", *resume)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr

    whole, parts = arrays(uninterrupted / "checkpoint.npz"), arrays(out / "checkpoint.npz")
    assert whole.keys() == parts.keys()
    for key in whole:  # weights, buffers and optimizer state, bit for bit
        assert np.array_equal(whole[key], parts[key]), key
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (uninterrupted, out)]
    assert without_timing(metrics[0]["history"]) == without_timing(metrics[1]["history"])
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]


def test_a_second_signal_stops_at_once():
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here at the latest
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert stop.received is None
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


HOLDER = textwrap.dedent(
    """
    import sys, time
    from cnnkit.rundir import RunDirectory
    with RunDirectory(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_a_second_run_into_the_same_folder_is_refused_and_a_dead_lock_is_not(tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        status = main(["train", "--epochs", "1", "--limit", "16", "--out", str(out)])
        line = capsys.readouterr().err.strip()
        assert status == 2 and "\n" not in line
        assert line.startswith(
            f"cnnkit train: error: output directory {out} is in use by another cnnkit train run "
            f"(pid {holder.pid} on "
        )
        assert line.endswith("; wait for it to end or choose another --out")
    finally:
        holder.kill()  # like a crash: the lock file stays, with a pid no longer alive
        holder.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid
    assert main(["train", "--epochs", "1", "--limit", "16", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "metrics.json"]


def test_two_real_runs_at_once(tmp_path, capsys):
    out = tmp_path / "run"
    first = cnnkit("train", "--epochs", "50", "--limit", "300", "--threads", "1", "--out", str(out))
    try:
        wait_for(out / "checkpoint.npz", first)
        assert main(["train", "--out", str(out), "--resume", str(out / "checkpoint.npz")]) == 2
        assert f"pid {first.pid} on" in capsys.readouterr().err
    finally:
        first.kill()
        first.wait()
    argv = ["train", "--epochs", "1", "--limit", "300", "--threads", "1", "--out", str(out)]
    assert main([*argv, "--resume", str(out / "checkpoint.npz"), "--epochs", "2"]) == 0


def test_folder_of_other_files_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "data").mkdir()
    argv = ["train", "--epochs", "1", "--limit", "16", "--out", str(out)]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"cnnkit train: error: output directory {out} holds files that cnnkit train did not "
        "write (data, notes.txt); choose another --out, or pass --overwrite to write into it anyway"
    )
    assert sorted(p.name for p in out.iterdir()) == ["data", "notes.txt"]
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "keep me"


def test_output_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert main(["train", "--out", str(blocker)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"cnnkit train: error: output directory {blocker} is a file, not a folder"
    )
    assert blocker.read_text() == "keep me"


def test_a_failed_run_removes_the_folders_it_created(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "run"
    assert main(["train", "--dataset", "imagenet", "--out", str(out)]) == 2
    assert "unknown data set 'imagenet'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_resume_checkpoint_changes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["train", "--resume", str(bad), "--out", str(tmp_path / "new")]) == 2
    assert "is not a readable .npz file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_run_directory_by_itself(tmp_path):
    with RunDirectory(tmp_path / "r") as out:
        assert (out / LOCK_NAME).exists()
        with pytest.raises(RunDirectoryError, match="is in use by another cnnkit train run"):
            RunDirectory(out).__enter__()
    assert not (tmp_path / "r" / LOCK_NAME).exists()
    assert is_run_file("checkpoint.npz") and is_run_file(".checkpoint.npz.k2j3h4.tmp")
    assert is_run_file("tensorboard") and is_run_file("confusion-normalized.svg")
    assert not is_run_file("notes.txt") and not is_run_file(".notes.txt.x.tmp")
