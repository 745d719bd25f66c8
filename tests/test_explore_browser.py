"""`cnnkit explore` in a real browser: Playwright for Python driving Debian's chromium.

Two short runs on the bundled 8x8 digits (LeNet-5 and mini_xception). Checked: the page loads
with no console error and no request to any host but the local server; every conv layer shows
its feature maps; the top class of an uploaded image equals `cnnkit predict` on the same file;
the equation panel's sum equals its output and both equal the forward pass's value (for the
separable blocks, the depthwise sum too); a drawing runs; a bad upload shows a message and the
server still answers.

With CNNKIT_SCREENSHOTS=1 the page-load test saves docs/images/explore-lenet5.png and
explore-mini_xception.png, after a run on mnist-small when that data set is at hand
(``$CNNKIT_DATA`` or ../shared/data) and on the digits otherwise; the Xception test saves
explore-xception.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("PIL", reason="the explorer decodes images with Pillow (the explore extra)")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs playwright: pip install playwright"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "no chromium binary on PATH (Debian: apt-get install -y chromium)", allow_module_level=True
    )

from explore_helpers import encode, get, serve_checkpoint, train_run  # noqa: E402

from cnnkit import viz  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = os.environ.get("CNNKIT_SCREENSHOTS") == "1"
MODELS = ["lenet5", "mini_xception"]


def screenshot_data():
    """(dataset, data_dir) for the screenshot runs: mnist-small when at hand, else digits."""
    env = os.environ.get("CNNKIT_DATA")
    for root in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (root / "mnist-small").is_dir():
            return "mnist-small", root
    return "digits", None


DATASET, DATA_DIR = screenshot_data() if SCREENSHOTS else ("digits", None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    dataset, data_dir = DATASET, DATA_DIR
    return {
        name: train_run(tmp_path_factory.mktemp(name), name, 1, dataset, data_dir)
        for name in MODELS
    }


@pytest.fixture(scope="module")
def servers(runs):
    opened = {
        name: serve_checkpoint(run / "checkpoint.npz", run_dir=run) for name, run in runs.items()
    }
    served = {name: context.__enter__() for name, context in opened.items()}
    yield served
    for context in opened.values():
        context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Page:
    """A browser page on one server, logging console errors and every requested URL."""

    def __init__(self, browser, server):
        self.server = server
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors, self.urls = [], []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda r: self.urls.append(r.url))
        self.page.goto(server.url)
        self.page.wait_for_selector("#top-class:not(:empty)")
        self.page.wait_for_selector("canvas.tile[data-drawn]")

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def value(self, selector: str) -> float:
        return float(self.page.get_attribute(selector, "data-value"))

    def wait_label(self, start: str) -> None:
        sync_api.expect(self.page.locator("#input-label")).to_have_text(
            re.compile("^" + re.escape(start))
        )

    def click_value(self, layer: str, channel: int, row: int, column: int) -> dict:
        """Click a feature map of ``layer``, then one of its values; the equation's position."""
        self.page.click(f'.layer[data-layer="{layer}"] canvas.tile >> nth={channel}')
        self.page.wait_for_selector(
            f'#channel-canvas[data-layer="{layer}"][data-channel="{channel}"]'
        )
        canvas = self.page.locator("#channel-canvas")
        size = self.page.evaluate("cellSize()")
        canvas.click(position={"x": (column + 0.5) * size, "y": (row + 0.5) * size})
        self.page.wait_for_selector(
            f'#equation[data-layer="{layer}"][data-y="{row}"][data-x="{column}"]'
        )
        return self.page.evaluate("Object.assign({}, document.getElementById('equation').dataset)")

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def pages(browser):
    opened = []

    def open_page(server) -> Page:
        opened.append(Page(browser, server))
        return opened[-1]

    yield open_page
    for page in opened:
        page.close()


def first_test_input(server) -> np.ndarray:
    subject = server.explorer.subject
    return subject.model_input(subject.test_pixels(0))


@pytest.mark.parametrize("name", MODELS)
def test_the_page_shows_every_layer_with_no_error_and_no_foreign_request(name, servers, pages):
    server = servers[name]
    page = pages(server)
    model = server.explorer.subject.model
    for layer in server.explorer.layers:
        assert page.page.locator(f'.layer[data-layer="{layer.name}"]').count() == 1, layer.name
    for conv in viz.conv_layer_names(model):
        drawn = page.page.locator(f'.layer[data-layer="{conv}"] canvas.tile[data-drawn="1"]')
        assert drawn.count() >= 1, conv
    predicted, _ = viz.class_prediction(model, first_test_input(server))
    assert page.text("#top-class") == server.explorer.subject.class_names[int(predicted)]
    page.page.wait_for_selector("#curves svg.chart circle")
    assert page.page.locator("#saliency").get_attribute("src").startswith("data:image/png")
    shown = "features.3" if name == "lenet5" else "block1.rep.0"
    _, h, w = next(layer.shape for layer in server.explorer.layers if layer.name == shown)
    page.click_value(shown, 0, 1 if name == "lenet5" else h // 3, 1 if name == "lenet5" else w // 2)
    if SCREENSHOTS:
        page.page.mouse.move(0, 0)
        page.page.evaluate("window.scrollTo(0, 0)")
        page.page.screenshot(
            path=str(REPO / "docs" / "images" / f"explore-{name}.png"), full_page=True
        )
    page.page.click("#next")
    page.wait_label("test image 1")
    origin = urlsplit(server.url).netloc
    foreign = [u for u in page.urls if not u.startswith("data:") and urlsplit(u).netloc != origin]
    assert foreign == [] and len(page.urls) > 5
    assert page.errors == []


def check_equation(page: Page, server, layer: str, channel: int, row: int, column: int) -> None:
    position = page.click_value(layer, channel, row, column)
    assert (position["channel"], position["y"], position["x"]) == (
        str(channel),
        str(row),
        str(column),
    )
    x = first_test_input(server)
    model = server.explorer.subject.model
    forward = float(viz.feature_maps(model, x, layer)[channel, row, column])
    shown_sum, shown_output = page.value("#eq-sum"), page.value("#eq-output")
    assert shown_output == forward
    assert shown_sum == pytest.approx(forward, rel=1e-5, abs=1e-6)
    assert float(page.text("#eq-sum")) == pytest.approx(float(page.text("#eq-output")), rel=1e-5)
    assert page.text("#equation .agree") == "= the forward pass"
    if position["depthChannel"]:
        depth = int(position["depthChannel"])
        expected = float(viz.feature_maps(model, x, f"{layer}.depthwise")[depth, row, column])
        assert page.value("#eq-depth-output") == expected
        assert page.value("#eq-depth-sum") == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    "name, layer, channel, row, column",
    [
        ("lenet5", "features.0", 2, 0, 0),
        ("lenet5", "features.3", 5, 3, 2),
        ("mini_xception", "conv1", 1, 7, 0),
        ("mini_xception", "block1.rep.0", 3, 2, 5),
        ("mini_xception", "block2.rep.4", 0, 1, 1),
    ],
)
def test_the_equation_panel_shows_the_forward_pass_numbers(
    name, layer, channel, row, column, servers, pages
):
    server = servers[name]
    if DATASET != "digits":  # 28 x 28 images: the same layers with larger maps
        row, column = row + 2, column + 2
    check_equation(pages(server), server, layer, channel, row, column)


@pytest.mark.parametrize("name", MODELS)
def test_the_top_class_of_an_upload_is_what_cnnkit_predict_says(
    name, runs, servers, pages, tmp_path
):
    server = servers[name]
    image = tmp_path / "digit.png"
    image.write_bytes(encode(server.explorer.subject.test_pixels(5)))
    page = pages(server)
    page.page.set_input_files("#upload", str(image))
    page.wait_label("uploaded PNG image")
    command = [sys.executable, "-m", "cnnkit", "predict", "--checkpoint"]
    result = subprocess.run(
        [*command, str(runs[name] / "checkpoint.npz"), str(image)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    predicted = result.stdout.strip().split(": ", 1)[1].rsplit(" ", 1)[0]
    assert page.text("#top-class") == predicted
    assert page.errors == []


def test_a_drawing_is_run(servers, pages):
    page = pages(servers["lenet5"])
    box = page.page.locator("#draw").bounding_box()
    page.page.mouse.move(box["x"] + 60, box["y"] + 30)
    page.page.mouse.down()
    for step in range(12):
        page.page.mouse.move(box["x"] + 60 + 4 * step, box["y"] + 30 + 9 * step)
    page.page.mouse.up()
    page.wait_label("drawing")
    assert page.page.locator(".prob").count() == 10
    assert page.text("#top-class") in servers["lenet5"].explorer.subject.class_names
    assert page.errors == []


def test_a_bad_upload_shows_a_message_and_the_server_still_answers(servers, pages):
    server = servers["lenet5"]
    page = pages(server)
    bad = {"name": "bad.png", "mimeType": "image/png", "buffer": b"this is not an image"}
    page.page.set_input_files("#upload", files=[bad])
    page.page.wait_for_selector("#message:not([hidden])")
    assert "not a PNG or JPEG image" in page.text("#message")
    huge = {"name": "huge.png", "mimeType": "image/png", "buffer": b"\0" * (2 * 2**20 + 1)}
    page.page.set_input_files("#upload", files=[huge])
    sync_api.expect(page.page.locator("#message")).to_contain_text("2 MB")
    assert get(server, "/api/model")[0] == 200
    page.page.click("#next")
    page.wait_label("test image 1")
    assert page.page.locator("#message").is_hidden()


def test_xception_with_imagenet_weights_runs_an_upload(browser, tmp_path):
    """The paper's Xception (299 x 299, random weights saved as a weights file): an upload runs
    through every layer; with CNNKIT_SCREENSHOTS=1 the page is docs/images/explore-xception.png."""
    from explore_helpers import serving

    from cnnkit import models
    from cnnkit.explore import source
    from cnnkit.io import save_weights

    weights = tmp_path / "xception.safetensors"
    save_weights(models.get("xception", seed=0), weights)
    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(rng.random((3, 320, 300))))
    with serving(source.from_weights("xception", weights)) as server:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(server.url)
        page.wait_for_selector("#top-class:not(:empty)", timeout=120_000)
        page.set_input_files("#upload", str(photo))
        label = sync_api.expect(page.locator("#input-label"))
        label.to_have_text(re.compile("^uploaded PNG image"), timeout=120_000)
        page.wait_for_selector("canvas.tile[data-drawn]", timeout=120_000)
        page.wait_for_function(
            "document.getElementById('saliency').src.startsWith('data:image/png')",
            timeout=120_000,
        )
        page.wait_for_timeout(1500)
        for conv in viz.conv_layer_names(server.explorer.subject.model)[:3]:
            assert page.locator(f'.layer[data-layer="{conv}"]').count() == 1, conv
        if SCREENSHOTS:
            page.mouse.move(0, 0)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(REPO / "docs" / "images" / "explore-xception.png"))
        assert errors == []
        page.close()
