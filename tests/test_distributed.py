"""Data-parallel training over MPI: K ranks must train exactly like one process on the same batches.

The end-to-end tests start real jobs with ``mpiexec`` on this machine (loopback), using
tests/distributed_worker.py or the `cnnkit train` command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cnnkit import cli
from cnnkit.data import DataLoader
from cnnkit.distributed import GradientAllreduce, launched_ranks, run_on_root
from cnnkit.functional.norm import batch_norm, batch_norm_backward
from cnnkit.io import load_checkpoint
from cnnkit.nn.module import Parameter
from cnnkit.recipe import RunError, TrainSettings, run

WORKER = Path(__file__).with_name("distributed_worker.py")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
CNNKIT = [sys.executable, "-m", "cnnkit"]


def mpi_available() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return MPIEXEC is not None


needs_mpi = pytest.mark.skipif(
    not mpi_available(), reason="needs mpi4py and mpiexec: pip install -e '.[mpi]'"
)


def single_thread_env() -> dict:
    """One BLAS thread per rank: the test machine has two cores for two ranks."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for variable in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        env.pop(variable, None)
    return env


def launch(command: list[str], ranks: int | None, timeout: float = 120, **kwargs):
    """Run ``command`` alone (ranks=None) or as ``mpiexec -n ranks command``."""
    if ranks is not None:
        command = [MPIEXEC, "-n", str(ranks), *command]
    return subprocess.run(
        command,
        env=single_thread_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def train_worker(out: Path, ranks: int | None, *options: str) -> dict:
    result = launch([sys.executable, str(WORKER), "--out", str(out), *options], ranks)
    assert result.returncode == 0, result.stderr
    with np.load(out) as saved:
        return {key: saved[key] for key in saved.files}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """Results of the single-process worker, computed once per set of options."""
    results: dict[tuple[str, ...], dict] = {}

    def train(*options: str) -> dict:
        if options not in results:
            out = tmp_path_factory.mktemp("one-process") / "result.npz"
            results[options] = train_worker(out, None, *options)
        return results[options]

    return train


def assert_same_training(expected: dict, actual: dict) -> None:
    states = [key for key in expected if key.startswith("state/")]
    assert states and states == [key for key in actual if key.startswith("state/")]
    for key in states:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-10, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(actual["losses"], expected["losses"], rtol=1e-10)
    np.testing.assert_allclose(actual["accuracies"], expected["accuracies"], rtol=1e-12)
    np.testing.assert_allclose(actual["test"], expected["test"], rtol=1e-10)
    np.testing.assert_array_equal(actual["confusion"], expected["confusion"])


@needs_mpi
@pytest.mark.parametrize(
    ("ranks", "options"),
    [
        (2, ("--model", "lenet5")),
        (2, ("--model", "small_cnn", "--sync-bn")),
        (3, ("--model", "small_cnn", "--sync-bn")),
    ],
    ids=["lenet5-2", "small_cnn-syncbn-2", "small_cnn-syncbn-3"],
)
def test_ranks_train_exactly_like_one_process_on_the_global_batch(
    tmp_path, one_process, ranks, options
):
    # 293 samples in batches of 32: the last batch of 5 splits unevenly over the ranks.
    single = one_process(*options)
    parallel = train_worker(tmp_path / "parallel.npz", ranks, *options)
    assert parallel["drift"] == 0.0
    assert_same_training(single, parallel)


@needs_mpi
def test_per_rank_batch_norm_keeps_ranks_identical_but_uses_shard_statistics(tmp_path, one_process):
    single = one_process("--model", "small_cnn")
    parallel = train_worker(tmp_path / "parallel.npz", 2, "--model", "small_cnn")
    assert parallel["drift"] == 0.0
    weight = "state/features.0.weight"
    assert weight in single
    assert np.max(np.abs(single[weight] - parallel[weight])) > 1e-6


@needs_mpi
@pytest.mark.parametrize(("first", "second"), [(2, None), (None, 2)], ids=["2-then-1", "1-then-2"])
def test_checkpoint_resumes_with_another_number_of_ranks(tmp_path, one_process, first, second):
    options = ("--model", "small_cnn", "--sync-bn")
    straight = one_process(*options, "--epochs", "3")
    checkpoint = tmp_path / "checkpoint.npz"
    train_worker(
        tmp_path / "first.npz", first, *options, "--epochs", "2", "--checkpoint", str(checkpoint)
    )
    assert load_checkpoint(checkpoint).training_state["epoch"] == 2
    resumed = train_worker(
        tmp_path / "resumed.npz", second, *options, "--epochs", "3", "--resume", str(checkpoint)
    )
    assert_same_training(straight, resumed)


@needs_mpi
def test_killed_rank_stops_the_job_and_leaves_a_whole_checkpoint(tmp_path):
    checkpoint = tmp_path / "checkpoint.npz"
    command = [sys.executable, str(WORKER), "--out", str(tmp_path / "never.npz")]
    command += ["--epochs", "50", "--checkpoint", str(checkpoint)]
    command += ["--kill-rank", "1", "--kill-after-epoch", "2"]
    started = time.monotonic()
    result = launch(command, 2, timeout=90)
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    assert not (tmp_path / "never.npz").exists()
    # the ranks meet after rank 0 has written epoch 2's checkpoint, then rank 1 dies
    assert load_checkpoint(checkpoint).training_state["epoch"] == 2


@needs_mpi
def test_diverging_loss_stops_every_rank_at_the_same_step(tmp_path):
    command = [sys.executable, str(WORKER), "--out", str(tmp_path / "never.npz")]
    command += ["--model", "lenet5", "--lr", "1e30", "--epochs", "3"]
    command += ["--stop-log", str(tmp_path / "stop")]
    result = launch(command, 2)
    assert result.returncode != 0
    assert "TrainingDiverged" in result.stderr
    stops = [(tmp_path / f"stop.{rank}").read_text() for rank in range(2)]
    assert stops[0] == stops[1], stops
    assert "training stopped before the update" in stops[0]


@needs_mpi
def test_cli_trains_on_two_ranks_writes_once_and_resumes_on_one(tmp_path):
    out = tmp_path / "run"
    command = [*CNNKIT, "train", "--epochs", "1", "--out", str(out), "--no-progress"]
    result = launch([*command, "--sync-bn"], 2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test accuracy") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ranks"] == 2 and metrics["settings"]["sync_batch_norm"] is True
    assert metrics["test_accuracy"] > 0.5
    resumed = launch(
        [*CNNKIT, "train", "--epochs", "2", "--out", str(out), "--no-progress"]
        + ["--resume", str(out / "checkpoint.npz")],
        None,
    )
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ranks"] == 1 and metrics["epochs"] == 2
    assert len(metrics["history"]) == 2


@needs_mpi
def test_cli_error_on_every_rank_is_reported_once(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"earlier run")
    result = launch([*CNNKIT, "train", "--epochs", "1", "--out", str(out)], 2)
    assert result.returncode == 2
    assert result.stderr.count("already holds a run") == 1
    assert (out / "checkpoint.npz").read_bytes() == b"earlier run"


@needs_mpi
def test_cli_error_on_one_rank_stops_all_ranks(tmp_path):
    common = ["train", "--epochs", "20", "--out", str(tmp_path / "run"), "--no-progress"]
    rank0 = [*CNNKIT, *common]
    rank1 = [*CNNKIT, *common, "--dataset", "mnist", "--data-dir", str(tmp_path / "nothing")]
    started = time.monotonic()
    result = launch(
        [MPIEXEC, "-n", "1", *rank0, ":", "-n", "1", *rank1], None, timeout=90, cwd=tmp_path
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    assert "rank 1 of 2" in result.stderr


def test_distributed_without_mpi_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert cli.main(["train", "--distributed", "--epochs", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "pip install 'cnnkit[mpi]'" in error


def test_sync_batch_norm_needs_distributed(tmp_path):
    with pytest.raises(RunError, match="sync_batch_norm needs distributed training"):
        run(TrainSettings(sync_batch_norm=True, out=str(tmp_path)))


def test_launcher_environment_gives_the_number_of_ranks(monkeypatch):
    for variable in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(variable, raising=False)
    assert launched_ranks() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched_ranks() == 4


def test_run_on_root_without_communicator_just_runs():
    assert run_on_root(None, lambda: 42) == 42


# --- sharding -----------------------------------------------------------------------------------


def shift_up(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x + rng.random(len(x))[:, None, None, None]


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("batch_size", [5, 8])
def test_shards_put_together_are_the_single_process_batches(rng, size, batch_size):
    images = rng.integers(0, 256, (23, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, 23)
    options = dict(batch_size=batch_size, shuffle=True, seed=11, transform=shift_up)
    options["drop_last"] = 0 < 23 % batch_size < size
    whole = list(DataLoader(images, labels, **options))
    shards = [list(DataLoader(images, labels, shard=(r, size), **options)) for r in range(size)]
    assert all(len(s) == len(whole) for s in shards)
    for b, (x, y) in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([s[b][0] for s in shards]), x)
        np.testing.assert_array_equal(np.concatenate([s[b][1] for s in shards]), y)
        lengths = [len(s[b][1]) for s in shards]
        assert max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize(
    ("shard", "message"),
    [
        ((2, 2), r"0 <= rank < size, got \(2, 2\)"),
        ((0, 0), r"0 <= rank < size"),
        ((0,), r"shard must be \(rank, size\)"),
        ("ab", r"shard must be \(rank, size\)"),
        ((0, 9), r"with 9 shards has batches of only 8 samples.*batch size >= 9"),
        ((0, 4), r"with 4 shards has a last batch of only 3 samples.*drop_last=True"),
    ],
)
def test_bad_shards_are_refused(shard, message):
    images, labels = np.zeros((19, 2, 2), np.uint8), np.zeros(19)
    with pytest.raises(ValueError, match=message):
        DataLoader(images, labels, batch_size=8, shard=shard)


# --- in-process checks of the reductions ---------------------------------------------------------


class DoublingCommunicator:
    """Stands in for two ranks holding the same gradients: each sum doubles the buffer."""

    def __init__(self):
        self.calls = []

    def allreduce_(self, buffer):
        self.calls.append(buffer.size)
        buffer *= 2
        return buffer


def test_gradient_allreduce_sums_every_gradient_in_buckets(rng):
    parameters = [Parameter(rng.standard_normal(shape)) for shape in [(3, 4), (5,), (2, 2, 2)]]
    grads = [rng.standard_normal(p.shape) for p in parameters]
    for p, g in zip(parameters, grads):
        p.grad[...] = g
    communicator = DoublingCommunicator()
    reduce = GradientAllreduce(communicator, parameters, bucket_bytes=10 * 8)
    reduce()
    assert communicator.calls == [10, 10, 5]
    assert reduce.nbytes == 25 * 8
    for p, g in zip(parameters, grads):
        np.testing.assert_array_equal(p.grad, 2 * g)


def test_gradient_allreduce_refuses_mixed_dtypes():
    parameters = [Parameter(np.zeros(2, np.float32)), Parameter(np.zeros(2, np.float64))]
    with pytest.raises(ValueError, match="parameters of one dtype"):
        GradientAllreduce(DoublingCommunicator(), parameters)


class ThreadRanks:
    """K threads acting as ranks: allreduce sums the arrays every thread contributes."""

    def __init__(self, size: int):
        self.size = size
        self.barrier = threading.Barrier(size)
        self.parts: dict[int, np.ndarray] = {}

    def allreduce_for(self, rank: int):
        def allreduce(array: np.ndarray) -> np.ndarray:
            self.parts[rank] = np.array(array)
            self.barrier.wait()
            total = sum(self.parts[r] for r in range(self.size))
            self.barrier.wait()
            return total

        return allreduce

    def run(self, work):
        results = [None] * self.size
        threads = [
            threading.Thread(target=lambda r=r: results.__setitem__(r, work(r)))
            for r in range(self.size)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results


@pytest.mark.parametrize("shape", [(7, 3, 4, 5), (9, 4)])
def test_synchronized_batch_norm_equals_batch_norm_of_the_whole_batch(rng, shape):
    x = rng.standard_normal(shape) * 3 + 1
    dout = rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    running = (np.zeros(shape[1]), np.ones(shape[1]))
    out, cache = batch_norm(x, *running, gamma, beta)
    dx, dgamma, dbeta = batch_norm_backward(dout, cache)

    ranks = ThreadRanks(3)
    bounds = [0, 2, 5, shape[0]]

    def rank_work(r):
        part = slice(bounds[r], bounds[r + 1])
        stats = (np.zeros(shape[1]), np.ones(shape[1]))
        allreduce = ranks.allreduce_for(r)
        out_r, cache_r = batch_norm(x[part], *stats, gamma, beta, allreduce=allreduce)
        return out_r, batch_norm_backward(dout[part], cache_r), stats

    results = ranks.run(rank_work)
    np.testing.assert_allclose(np.concatenate([r[0] for r in results]), out, rtol=1e-12)
    np.testing.assert_allclose(np.concatenate([r[1][0] for r in results]), dx, rtol=1e-10)
    np.testing.assert_allclose(sum(r[1][1] for r in results), dgamma, rtol=1e-12)
    np.testing.assert_allclose(sum(r[1][2] for r in results), dbeta, rtol=1e-12)
    for r in results:
        np.testing.assert_allclose(r[2][0], running[0], rtol=1e-12)
        np.testing.assert_allclose(r[2][1], running[1], rtol=1e-12)


@needs_mpi
def test_python_api_example_trains_on_two_ranks():
    example = Path(__file__).resolve().parents[1] / "examples" / "distributed_digits.py"
    result = launch([sys.executable, str(example)], 2)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("2 rank(s): test accuracy")
    assert float(lines[0].split()[4]) > 0.9
