"""Every Python code block of the tutorial (docs/tutorial/*.md) and the examples page runs.

Each page's blocks share one namespace and run in a fresh folder with an ``images/`` folder, as
a reader pasting them into one Python session would. ``CNNKIT_TUTORIAL_IMAGES=1`` runs them in
docs/tutorial itself instead, which rewrites the pictures the pages show.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial"
EXAMPLES = TUTORIAL.parent / "examples.md"
PAGES = sorted(p for p in TUTORIAL.glob("*.md") if p.name != "index.md") + [EXAMPLES]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    """The page's ```python blocks, in order."""
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def test_every_page_has_code():
    assert {p.stem for p in PAGES} == {"convolution", "backprop", "lenet", "separable", "examples"}
    assert all(python_blocks(page) for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_tutorial_page_runs(page, tmp_path, monkeypatch, torch_single_thread):
    workdir = TUTORIAL if os.environ.get("CNNKIT_TUTORIAL_IMAGES") == "1" else tmp_path
    (workdir / "images").mkdir(exist_ok=True)
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": f"tutorial_{page.stem}"}
    for number, block in enumerate(python_blocks(page), start=1):
        code = compile(block, f"{page.name} block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - the tutorial's own code, run as a reader would
    for picture in re.findall(r"\]\((images/[^)]+)\)", page.read_text(encoding="utf-8")):
        assert (workdir / picture).is_file(), f"{page.name} shows {picture} but never writes it"
