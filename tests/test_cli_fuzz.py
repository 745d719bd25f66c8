"""Random command lines for every `cnnkit` command: exit 0 or 2, one line on failure, no traceback.

Hypothesis draws each command's options with values of every kind (valid ones, negative, zero,
huge, nan, inf, empty, unicode; paths that are files, folders, missing or damaged) and runs
``cnnkit.cli.main`` in-process with the working directory in a fresh output folder. Every
example must end with exit status 0 or 2 (1 only for a gradcheck that reports a failed check),
never print a traceback, print at most one line on stderr when it fails, and leave every file
outside its output folder as it was (the inputs folder is hashed before and after).

Runs stay short: a training command line starts with ``--limit 16 --epochs 1`` and the drawn
``--limit``/``--epochs``/``--warmup`` values are small when valid (an invalid one may be huge);
likewise gradcheck's batch and entries. Models that take seconds to build (xception, resnet56)
appear only where nothing trains on them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnkit import models
from cnnkit.cli import main
from cnnkit.io import save_weights

FAST_MODELS = ["lenet5", "vgg_small", "resnet20", "mini_xception"]
JUNK = [
    "",
    " ",
    "-1",
    "0",
    "nan",
    "inf",
    "-inf",
    "1e999",
    "ünïcødé",
    "∞",
    "٣",
    "0x10",
    "1,2",
    "None",
]
HUGE = ["99999999999999999999999", str(2**63), "1e308"]


def fixed(*values) -> st.SearchStrategy[str]:
    return st.sampled_from([str(v) for v in values])


def junk() -> st.SearchStrategy[str]:
    return st.sampled_from(JUNK + HUGE) | st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6
    )


def value(*valid) -> st.SearchStrategy[str]:
    """A valid value among ``valid`` or anything else."""
    return fixed(*valid) | junk()


def numbers(*valid) -> st.SearchStrategy[str]:
    """A valid value, or a float of any size or sign (nan and inf included), or junk."""
    return fixed(*valid) | st.floats(allow_nan=True, allow_infinity=True).map(repr) | junk()


def relative_name() -> st.SearchStrategy[str]:
    """A file name relative to the output folder (so it cannot leave it)."""
    return st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/\\"),
        min_size=1,
        max_size=8,
    ).filter(lambda name: name not in (".", "..") and not name.startswith("-"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The inputs every command line may name (never to be changed) and a run directory."""
    root = tmp_path_factory.mktemp("fuzz")
    inputs = root / "inputs"
    inputs.mkdir()
    run = inputs / "run"
    assert main(["train", "--epochs", "1", "--limit", "64", "--out", str(run)]) == 0
    (inputs / "notes.txt").write_text("not cnnkit's")
    (inputs / "empty.bin").write_bytes(b"")
    (inputs / "corrupt.npz").write_bytes((run / "checkpoint.npz").read_bytes()[:5000])
    folder = inputs / "folder"
    folder.mkdir()
    (folder / "readme.md").write_text("a folder of other files")
    images = inputs / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(images / "digit.png")
    Image.fromarray(rng.integers(0, 65536, (16, 16), dtype=np.uint16)).save(images / "deep.png")
    Image.new("CMYK", (12, 12), (10, 20, 30, 40)).save(images / "cmyk.jpg")
    Image.new("P", (8, 8)).save(images / "palette.png", transparency=0)
    Image.new("L", (1, 1)).save(inputs / "tiny.png")
    (inputs / "empty.png").write_bytes(b"")
    frames = [Image.new("L", (8, 8), v) for v in (10, 200)]
    frames[0].save(inputs / "animated.gif", save_all=True, append_images=frames[1:])
    for cls in ("a", "b"):
        (inputs / "classes" / cls).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(inputs / "classes" / cls / f"{i}.png")
    lenet = models.get("lenet5", num_classes=1000, in_channels=3)
    save_weights(lenet, inputs / "lenet5.safetensors")
    save_weights(lenet, inputs / "lenet5.npz")
    np.savez(inputs / "objects.npz", a=np.array([{"pickled": True}], dtype=object))
    checkpoint = str(run / "checkpoint.npz")
    assert main(["export", "--checkpoint", checkpoint, "--onnx", str(inputs / "lenet5.onnx")]) == 0
    (inputs / "truncated.onnx").write_bytes((inputs / "lenet5.onnx").read_bytes()[:900])
    return root, inputs


def input_paths(inputs: Path) -> st.SearchStrategy[str]:
    """Paths to read: files of every kind, folders, missing and odd names."""
    names = [
        "run",
        "run/checkpoint.npz",
        "run/metrics.json",
        "notes.txt",
        "empty.bin",
        "corrupt.npz",
        "folder",
        "images",
        "images/digit.png",
        "images/deep.png",
        "images/cmyk.jpg",
        "images/palette.png",
        "tiny.png",
        "empty.png",
        "animated.gif",
        "classes",
        "lenet5.safetensors",
        "lenet5.npz",
        "objects.npz",
        "lenet5.onnx",
        "truncated.onnx",
        "missing.npz",
        "ünïcødé/∂.png",
    ]
    return st.sampled_from([str(inputs / n) for n in names]) | fixed("", "-", "missing.png")


def output_dirs(inputs: Path) -> st.SearchStrategy[str]:
    """Run directories: new ones in the output folder, or input folders and files to refuse."""
    refused = [str(inputs / n) for n in ("folder", "notes.txt", "run", "images")]
    return relative_name() | st.sampled_from(refused) | fixed("")


def options(pairs: dict[str, st.SearchStrategy[str]], flags=()) -> st.SearchStrategy[list]:
    """A random subset of ``pairs`` (option -> value strategy) and ``flags``, in random order."""
    drawn = [st.tuples(st.just(name), strategy) for name, strategy in pairs.items()]
    drawn += [st.tuples(st.just(flag)) for flag in flags]
    return st.lists(st.one_of(drawn), max_size=5).map(lambda items: [w for i in items for w in i])


def command_lines(inputs: Path) -> st.SearchStrategy[list[str]]:
    """A command line of any command."""
    path = input_paths(inputs)
    model = fixed(*FAST_MODELS, "alexnet") | junk()
    shapes = fixed("1,8,8", "3,8,8", "1,28,28", "1,2,2", "1,1,1", "3,32,32", "1,100000,100000")
    shapes |= st.lists(st.integers(-2, 40).map(str), max_size=4).map(",".join) | junk()
    train = options(
        {
            "--model": model,
            "--dataset": fixed("digits", "mnist", "imagenet", f"folder:{inputs / 'classes'}")
            | fixed(f"folder:{inputs / 'folder'}", "folder:")
            | junk(),
            "--data-dir": path,
            "--epochs": value(1, 2),
            "--batch-size": value(1, 4, 16, 10**6),
            "--optimizer": value("sgd", "adam", "adamw", "rmsprop"),
            "--lr": numbers(0.01, 1e-3, 1e30),
            "--momentum": numbers(0, 0.5, 0.99),
            "--weight-decay": numbers(0, 1e-4),
            "--schedule": value("none", "step", "cosine", "xception"),
            "--warmup": value(0, 1),
            "--seed": value(0, 7, 2**63 - 1),
            "--augment": value("none", "shift", "crop-flip"),
            "--val-split": numbers(0, 0.1, 0.5, 0.99),
            "--limit": value(1, 2, 5, 16),
            "--patience": value(1, 3),
            "--grad-clip": numbers(0.5, 1e-30),
            "--label-smoothing": numbers(0, 0.1, 1),
            "--out": output_dirs(inputs),
            "--resume": path,
            "--threads": value(1, 2, 2**31 - 1),
        },
        flags=("--overwrite", "--no-progress", "--distributed", "--sync-bn", "--tensorboard"),
    ).map(lambda rest: ["train", "--limit", "16", "--epochs", "1", *rest])
    evaluate = options(
        {
            "--checkpoint": path,
            "--dataset": fixed("digits", "mnist", f"folder:{inputs / 'classes'}") | junk(),
            "--data-dir": path,
            "--batch-size": value(1, 64, 10**9),
        }
    ).map(lambda rest: ["evaluate", "--checkpoint", str(inputs / "run" / "checkpoint.npz"), *rest])
    model_options = fixed('{"input_size": 32}', "{}", '{"width": 0.5}', "[1]", "{", '{"a": NaN}')
    model_options |= st.dictionaries(
        st.sampled_from(["num_classes", "in_channels", "input_size", "seed", "depth"]),
        st.integers(-3, 64)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=3),
        max_size=2,
    ).map(json.dumps)
    predict = st.tuples(
        st.sampled_from(["--checkpoint", "--weights", "--onnx"]),
        path,
        st.lists(path, min_size=1, max_size=3),
        options(
            {
                "--top-k": value(1, 3, 10**6),
                "--model": model,
                "--layout": value("auto", "cnnkit", "timm", "keras"),
                "--flavor": value("keras", "timm"),
                "--model-options": model_options,
                "--input-shape": fixed("1,8,8", "3,8,8") | junk(),
            }
        ),
    ).map(lambda t: ["predict", t[0], t[1], *t[3], "--", *t[2]])
    summary = options(
        {
            "--model": model | fixed("xception", "resnet56", "small_cnn"),
            "--input-shape": shapes,
            "--num-classes": value(1, 10, 1000, 100_000),
        }
    ).map(lambda rest: ["summary", "--model", "lenet5", *rest])
    summary |= st.tuples(path, options({"--input-shape": shapes})).map(
        lambda t: ["summary", "--onnx", t[0], *t[1]]
    )
    # --overwrite only with a new name in the output folder: replacing an input is the user's
    # explicit wish, and the check below says that no input changes.
    export = st.one_of(
        st.tuples(relative_name(), st.sampled_from([[], ["--overwrite"]])).map(
            lambda t: ["--onnx", t[0], *t[1]]
        ),
        path.map(lambda p: ["--onnx", p]),
    )
    export = st.tuples(path | fixed(str(inputs / "run" / "checkpoint.npz")), export).flatmap(
        lambda t: options({"--opset": value(13, 17, 21, 12, 99)}).map(
            lambda rest: ["export", "--checkpoint", t[0], *t[1], *rest]
        )
    )
    gradcheck = options(
        {
            "--model": fixed("lenet5") | junk(),
            "--input-shape": fixed("1,8,8", "1,2,2", "2,8,8") | junk(),
            "--batch": value(1, 2),
            "--entries": value(1, 2),
            "--tolerance": numbers(1e-5, 1e-300, 1e300),
            "--seed": value(0, 3),
        }
    ).map(lambda rest: ["gradcheck", "--input-shape", "1,8,8", "--entries", "2", *rest])
    listing = st.sampled_from([["models"], ["datasets"], ["--version"], []])
    checkpoint = ["--checkpoint", str(inputs / "run" / "checkpoint.npz")]
    plot_out = {"--out": relative_name() | fixed("")}
    image_kinds = {
        "--test-index": value(0, 5, 10**6),
        "--data-dir": path,
        "--class": value("3", "7", "eleven", "-1", "10"),
        "--layer": value("features.0", "features.3", "classifier.0", "conv9"),
        **plot_out,
    }
    plot = st.one_of(
        st.tuples(
            st.sampled_from(["curves", "confusion"]),
            # Their default output goes into RUN: the copy in the output folder, or a path
            # without metrics.json (refused), never the inputs' run.
            fixed("run") | path.filter(lambda p: not p.startswith(str(inputs / "run"))),
            options({"--out": plot_out["--out"]}, flags=("--svg", "--normalize")),
        ).map(lambda t: ["plot", t[0], t[1], *t[2]]),
        st.tuples(
            st.sampled_from(["filters", "misclassified"]),
            options(
                {
                    "--checkpoint": path,
                    "--layer": value("features.0", "classifier.2", ""),
                    "--max-filters": value(1, 4),
                    "--max-images": value(1, 4),
                    "--dataset": fixed("digits") | junk(),
                    **plot_out,
                },
                flags=("--svg",),
            ),
        ).map(lambda t: ["plot", t[0], *checkpoint, *t[1]]),
        st.tuples(
            st.sampled_from(["features", "saliency", "gradcam"]),
            st.lists(path, max_size=1),
            options({**image_kinds, "--max-maps": value(1, 4)}, flags=("--svg",)),
        ).map(lambda t: ["plot", t[0], *checkpoint, "--layer", "features.0", *t[2], *t[1]]),
    )
    return st.one_of(train, evaluate, predict, summary, export, gradcheck, listing, plot)


def written_into(after: dict[str, str], before: dict[str, str], argv, inputs: Path) -> dict:
    """``after`` less what the command line asked to write: a new file that ``export --onnx
    PATH`` creates (with the new folders above it), and the run folder that ``train
    --overwrite --out DIR`` replaces (its files as they were before); neither is a change to an
    input."""
    if argv[:1] == ["export"] and "--onnx" in argv[:-1]:
        target = Path(argv[argv.index("--onnx") + 1])
        written = {target.name, *(folder.name for folder in target.parents)}
        return {k: v for k, v in after.items() if k in before or Path(k).name not in written}
    if argv[:1] == ["train"] and "--overwrite" in argv and "--out" in argv[:-1]:
        run = Path(argv[argv.index("--out") + 1])
        if run.is_relative_to(inputs):
            folder = run.relative_to(inputs)

            def replaced(key: str) -> bool:
                return Path(key) == folder or folder in Path(key).parents

            kept = {k: v for k, v in after.items() if not replaced(k)}
            return kept | {k: v for k, v in before.items() if replaced(k)}
    return after


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes (folders too, by their names)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        found[key] = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


def run_in(out: Path, argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with the working directory in ``out``: (status, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(out)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = main(argv)
            except SystemExit as exit_info:  # argparse: --help, --version, usage errors
                status = exit_info.code
    finally:
        os.chdir(previous)
    return status, stdout.getvalue(), stderr.getvalue()


@settings(
    max_examples=int(os.environ.get("CNNKIT_FUZZ_EXAMPLES", 120)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_command_lines(world, monkeypatch, data):
    root, inputs = world
    monkeypatch.setenv("CNNKIT_DATA", str(inputs / "folder"))  # no real data sets: stay fast
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # --distributed: the one-line refusal
    argv = data.draw(command_lines(inputs), label="argv")
    out = Path(tempfile.mkdtemp(dir=root, prefix="out-"))
    (out / "run").mkdir()
    shutil.copy(inputs / "run" / "metrics.json", out / "run" / "metrics.json")
    before, around = digest(inputs), sorted(os.listdir(root))
    try:
        status, stdout, stderr = run_in(out, argv)
        assert "Traceback" not in stderr, (argv, stderr)
        if argv[:1] == ["gradcheck"] and status == 1:
            assert "FAILED" in stdout, (argv, stdout)
        else:
            assert status in (0, 2), (argv, status, stderr)
        if status == 2:
            assert len(stderr.strip().splitlines()) == 1, (argv, stderr)
        assert written_into(digest(inputs), before, argv, inputs) == before, argv
        assert sorted(os.listdir(root)) == around, argv
    finally:
        shutil.rmtree(out)
