"""cnnkit.keep_freed_memory makes freed arrays reusable without page faults."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

from cnnkit import allocator

FAULTS_OVER_TEN_STEPS = """
import resource, sys
import numpy as np
import cnnkit
print(cnnkit.keep_freed_memory() if sys.argv[1] == "keep" else "defaults")
def step():
    arrays = [np.ones(2**21, np.float32) for _ in range(4)]  # 4 x 8 MiB, freed at return
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", FAULTS_OVER_TEN_STEPS, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    answer, faults = result.stdout.split()
    return answer, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_arrays_are_reused_without_page_faults():
    answer, faults = page_faults("keep")
    assert answer == "True"
    # ten steps write 320 MiB: 81,920 pages if each were new memory
    assert faults < 1000


def test_without_mallopt_it_reports_false(monkeypatch):
    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert allocator.keep_freed_memory() is False
