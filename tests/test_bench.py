"""The benchmark scripts run, check their torch mirrors, and attribute time to the right ops.

Timings are not asserted (the suite makes no speed claims); what is checked is that a quick
bench.py run produces rows whose two sides agree, and that profile_step.py finds each layer
type's time on both sides, which fails if PyTorch renames the operators it sums.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

bench = importlib.import_module("bench")
profile_step = importlib.import_module("profile_step")


@pytest.fixture
def torch_threads_restored():
    """bench.main sets torch's thread count for the whole process; put it back afterwards."""
    threads = bench.torch.get_num_threads()
    yield
    bench.torch.set_num_threads(threads)


def test_a_quick_bench_run_writes_rows_whose_two_sides_agree(tmp_path, torch_threads_restored):
    out = tmp_path / "bench.json"
    options = ["--quick", "--cases", "L1,lenet5", "--threads", "1", "--return-freed-memory"]
    bench.main([*options, "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["case"], r["pass"]) for r in rows] == [
        ("L1", "forward"),
        ("L1", "fwd+bwd"),
        ("lenet5", "train step b64"),
    ]
    for row in rows:
        assert row["mirror"] in ("ok", "rounding")
        assert row["cnnkit_ms"] > 0 and row["torch_ms"] > 0
        assert row["ratio"] == pytest.approx(row["cnnkit_ms"] / row["torch_ms"], rel=1e-6)


def test_profile_step_finds_every_layer_type_of_lenet5_on_both_sides():
    _, shape = bench.TRAIN_STEPS["lenet5"]
    model, ours, theirs = bench.train_step_pair("lenet5", 8, shape, 10, np.float32)
    ours(), theirs()  # warm-up
    mine, other = profile_step.cnnkit_step(model, ours), profile_step.torch_step(theirs)
    layers = [("Conv2d", "forward"), ("Conv2d", "backward"), ("ReLU", "forward")]
    layers += [("ReLU", "backward"), ("MaxPool2d", "forward"), ("MaxPool2d", "backward")]
    for key in layers:
        assert mine[key] > 0 and other[key] > 0, key
    assert sum(v for k, v in mine.items() if k != "total") < mine["total"]
    assert not any("forward" in vars(m) for m in model.modules())  # the timers are removed
    table = profile_step.table([mine], [other])
    assert "| Conv2d | forward |" in table and "| whole step | both |" in table
