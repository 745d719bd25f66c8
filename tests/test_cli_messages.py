"""Every one-line error of the command line: option values, option combinations, the boundary."""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pytest

from cnnkit.cli import app, main
from cnnkit.cli.errors import is_user_error, raised_by_cnnkit
from cnnkit.cli.options import integer, json_object, number, shape, text


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def parse_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return one_line(capsys)


PARSE_ERRORS = [
    (["train", "--lr", "nan"], "argument --lr: expected a finite number > 0, got 'nan'"),
    (["train", "--lr", "inf"], "argument --lr: expected a finite number > 0, got 'inf'"),
    (["train", "--lr", "0"], "argument --lr: expected a finite number > 0, got '0'"),
    (["train", "--seed", "-5"], "argument --seed: expected an integer >= 0, got '-5'"),
    (
        ["train", "--seed", str(2**63)],
        "argument --seed: expected an integer >= 0 that fits in 64 bits (at most 2**63 - 1), got",
    ),
    (["train", "--epochs", "1.5"], "argument --epochs: expected an integer >= 1, got '1.5'"),
    (["train", "--epochs", "٣"], "argument --epochs: expected an integer >= 1, got '٣'"),
    (["train", "--batch-size", ""], "argument --batch-size: expected an integer >= 1, got ''"),
    (["train", "--momentum", "nan"], "argument --momentum: expected a finite number in [0, 1)"),
    (["train", "--momentum", "1"], "argument --momentum: expected a finite number in [0, 1), got"),
    (
        ["train", "--weight-decay", "-1e-4"],
        "argument --weight-decay: expected a finite number >= 0",
    ),
    (["train", "--warmup", "-1"], "argument --warmup: expected an integer >= 0, got '-1'"),
    (["train", "--val-split", "1"], "argument --val-split: expected a finite number in [0, 1)"),
    (["train", "--val-split", "-0.1"], "argument --val-split: expected a finite number in [0, 1)"),
    (["train", "--limit", "0"], "argument --limit: expected an integer >= 1, got '0'"),
    (["train", "--patience", "0"], "argument --patience: expected an integer >= 1, got '0'"),
    (["train", "--grad-clip", "-inf"], "argument --grad-clip: expected a finite number > 0, got"),
    (["train", "--lr", "-NaN"], "argument --lr: expected a finite number > 0, got '-NaN'"),
    (["train", "--grad-clip", "0"], "argument --grad-clip: expected a finite number > 0, got '0'"),
    (
        ["train", "--label-smoothing", "1.5"],
        "argument --label-smoothing: expected a finite number in [0, 1], got '1.5'",
    ),
    (
        ["train", "--threads", str(2**31)],
        "argument --threads: expected an integer in [1, 2147483647], got '2147483648'",
    ),
    (["train", "--out", ""], "argument --out: expected a folder name, got ''"),
    (["train", "--resume", " "], "argument --resume: expected a file name, got ' '"),
    (["train", "--dataset", ""], "argument --dataset: expected a data set name, got ''"),
    (["train", "--layer\r\n"], "unrecognized arguments: --layer\\r\\n (see cnnkit train --help)"),
    (["train", "--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'"),
    (["evaluate", "--checkpoint", ""], "argument --checkpoint: expected a file name, got ''"),
    (["summary", "--model", "lenet5", "--input-shape", "1,2"], "expected C,H,W such as 1,28,28"),
    (
        ["summary", "--model", "lenet5", "--input-shape", "1,0,5"],
        "expected C,H,W of positive integers such as 1,28,28, got '1,0,5'",
    ),
    (
        ["summary", "--model", "lenet5", "--input-shape", "3,10000,10000"],
        "expected C,H,W of at most 67,108,864 values in all, got '3,10000,10000' (300,000,000)",
    ),
    (
        ["summary", "--model", "lenet5", "--num-classes", "100001"],
        "argument --num-classes: expected an integer in [1, 100000], got '100001'",
    ),
    (["gradcheck", "--tolerance", "nan"], "argument --tolerance: expected a finite number > 0"),
    (["gradcheck", "--batch", "0"], "argument --batch: expected an integer >= 1, got '0'"),
    (
        ["predict", "--weights", "w.npz", "--model-options", '{"width": NaN}', "x.png"],
        "argument --model-options: expected a JSON object of finite values",
    ),
    (
        ["plot", "saliency", "--checkpoint", "c.npz", "--test-index", "-1"],
        "argument --test-index: expected an integer >= 0, got '-1'",
    ),
    (
        ["plot", "filters", "--checkpoint", "c.npz", "--max-filters", "0"],
        "argument --max-filters: expected an integer >= 1, got '0'",
    ),
    (["plot", "features", "--checkpoint", "c.npz", "--layer", ""], "expected a layer name"),
]


@pytest.mark.parametrize("argv, fragment", PARSE_ERRORS, ids=lambda v: " ".join(v)[:60])
def test_option_values_are_checked_when_parsed(capsys, argv, fragment):
    line = parse_error(capsys, argv)
    assert line.startswith(f"cnnkit {argv[0]}")
    assert fragment in line, line


COMBINATIONS = [
    (
        ["train", "--momentum", "0.5"],
        "cnnkit train: error: argument --momentum: adam has no momentum, got --momentum 0.5; "
        "it applies to --optimizer sgd or rmsprop",
    ),
    (
        ["train", "--optimizer", "adamw", "--momentum", "0"],
        "argument --momentum: adamw has no momentum",
    ),
    (
        ["train", "--epochs", "3", "--warmup", "3"],
        "argument --warmup: expected fewer epochs than the run (--epochs 3), got 3",
    ),
    (
        ["train", "--patience", "2", "--val-split", "0"],
        "argument --patience: early stopping watches the validation loss, but --val-split is 0",
    ),
    (["train", "--sync-bn"], "argument --sync-bn: expected --distributed (or an MPI launcher)"),
    (
        ["summary", "--model", "lenet5", "--input-shape", "1,2,2"],
        "argument --input-shape: lenet5 cannot take 1,2,2: ",
    ),
    (
        ["gradcheck", "--model", "lenet5", "--input-shape", "1,2,2"],
        "argument --input-shape: lenet5 cannot take 1,2,2",
    ),
    (
        ["gradcheck", "--input-shape", "1,1000,1000", "--batch", "100"],
        "argument --batch: expected at most 67,108,864 input values in all, got --batch 100 of "
        "1,1000,1000 (100,000,000)",
    ),
    (
        ["plot", "saliency", "--checkpoint", "c.npz", "x.png", "--data-dir", "d"],
        "argument --data-dir: goes with --test-index (the test split), got it with the image x.png",
    ),
]


@pytest.mark.parametrize("argv, fragment", COMBINATIONS, ids=lambda v: " ".join(v)[:60])
def test_option_combinations_are_checked_before_any_work(
    tmp_path, monkeypatch, capsys, argv, fragment
):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert fragment in one_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_momentum_with_sgd_and_rmsprop_is_accepted(tmp_path):
    for optimizer in ("sgd", "rmsprop"):
        argv = ["train", "--optimizer", optimizer, "--momentum", "0.5", "--epochs", "1"]
        assert main([*argv, "--limit", "16", "--out", str(tmp_path / optimizer)]) == 0


def test_argument_types_by_themselves():
    assert integer(1)("+3") == 3
    assert number(0, 1, high_open=True)("0.5") == 0.5
    assert shape(" 3, 8 ,8") == (3, 8, 8)
    assert json_object('{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    assert text("a name")("x") == "x"
    with pytest.raises(
        argparse.ArgumentTypeError, match=r"expected a finite number >= 0, got '1e999'"
    ):
        number(0)("1e999")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a JSON object"):
        json_object("[1]")


def failing_command(error: BaseException):
    """A stand-in for a command's run() that raises ``error``."""

    def run(args):
        raise error

    return run


def test_cnnkit_validation_error_is_one_line(monkeypatch, capsys):
    from cnnkit.nn import Conv2d

    monkeypatch.setattr(app.models, "run", lambda args: Conv2d(0, 1, 3))
    assert main(["models"]) == 2
    assert "cnnkit models: error: " in one_line(capsys)


def test_internal_bug_prints_traceback_and_how_to_report(monkeypatch, capsys):
    def run(args):
        np.zeros(2).reshape(3)  # numpy's own ValueError, raised by a bug in the caller

    monkeypatch.setattr(app.models, "run", run)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "cannot reshape array" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cnnkit models: internal error (ValueError): this is a bug in cnnkit")
    assert "please report it" in last and "traceback above" in last


@pytest.mark.parametrize(
    "error, expected",
    [
        (PermissionError(13, "Permission denied", "/x/y"), "[Errno 13] Permission denied: '/x/y'"),
        (MemoryError("Unable to allocate 8 EiB"), "out of memory (Unable to allocate 8 EiB)"),
        (ValueError("two\nlines"), None),
        (
            OSError(2, "No such file or directory", "a\nb\r"),
            "[Errno 2] No such file or directory: 'a\\nb\\r'",
        ),
    ],
)
def test_boundary_kinds(monkeypatch, capsys, error, expected):
    monkeypatch.setattr(app.models, "run", failing_command(error))
    status = main(["models"])
    if expected is None:  # a ValueError raised outside cnnkit's own code: a bug
        assert status == 1
        assert "internal error (ValueError)" in capsys.readouterr().err
        return
    assert status == 2
    assert one_line(capsys) == f"cnnkit models: error: {expected}"


def test_raised_by_cnnkit_looks_at_the_raise_statement():
    from cnnkit.nn import Conv2d

    with pytest.raises(ValueError) as own:
        Conv2d(0, 1, 3)
    assert raised_by_cnnkit(own.value) and is_user_error(own.value)
    with pytest.raises(TypeError) as foreign:
        np.zeros(2) + "x"
    assert not raised_by_cnnkit(foreign.value) and not is_user_error(foreign.value)


def test_warnings_are_one_line(monkeypatch, capsys):
    def run(args):
        warnings.warn("first line\nsecond line", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(app.models, "run", run)
    assert main(["models"]) == 0
    assert one_line(capsys) == "cnnkit models: warning: first line\\nsecond line"


def test_interrupt_outside_training(monkeypatch, capsys):
    monkeypatch.setattr(app.models, "run", failing_command(KeyboardInterrupt()))
    assert main(["models"]) == 130
    assert one_line(capsys) == "cnnkit models: interrupted"
