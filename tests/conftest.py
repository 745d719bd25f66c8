"""Shared pytest fixtures for the cnnkit test suite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

# `pytest -n 2` runs two workers on two cores: one BLAS thread each avoids oversubscription,
# under which OpenBLAS's spinning threads make small GEMMs many times slower.
threadpool_limits(1)


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A NumPy Generator seeded from the test's name, so every test draws its own fixed data."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % 2**32
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def torch_single_thread():
    """Run torch (the oracle) on one thread for a module, then restore its thread count.

    The oracle's tensors are tiny: extra OpenMP threads only spin against NumPy and against the
    other test processes, which made the torch comparisons several times slower on two cores.
    """
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def real_data_dir():
    """Return a function giving the folder holding data set ``kind`` ($CNNKIT_DATA, else
    ../shared/data next to the checkout); it skips the test, naming the folder, when absent."""

    def find(kind: str) -> Path:
        env = os.environ.get("CNNKIT_DATA")
        candidates = ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared" / "data"]
        for root in candidates:
            if (root / kind).is_dir():
                return root
        pytest.skip(f"no {kind} data: neither $CNNKIT_DATA nor {candidates[-1]} holds {kind}/")

    return find
