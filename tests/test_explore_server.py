"""`cnnkit explore` without a browser: the routes, their numbers and their refusals.

Two short runs on the bundled 8x8 digits (LeNet-5 and mini_xception) feed the tests. The numbers
are checked against cnnkit itself: the top class against ``viz.class_prediction``, every feature
map against ``viz.feature_maps``, every equation's sum against the forward pass's value and its
window against the zero-padded layer input. The refusals: path traversal, oversized, malformed
and bomb uploads, bad queries and methods, a wrong Host header, a slow client and many requests
at once, after each of which the server still answers; the checkpoint and run folder are never
written.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

pytest.importorskip("PIL", reason="the explorer decodes images with Pillow (the explore extra)")
from explore_helpers import (  # noqa: E402
    encode,
    get,
    post_image,
    send,
    serve_checkpoint,
    serving,
    train_run,
)

from cnnkit import models, viz  # noqa: E402
from cnnkit.explore import (  # noqa: E402
    ExploreError,
    host_warning,
    main,
    source,
    view,  # noqa: E402
)
from cnnkit.explore.images import MAX_UPLOAD_BYTES  # noqa: E402
from cnnkit.functional._args import resolve_padding  # noqa: E402
from cnnkit.io import save_checkpoint, save_weights  # noqa: E402
from cnnkit.nn import Conv2d, SeparableConv2d  # noqa: E402


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("lenet"), "lenet5")


@pytest.fixture(scope="module")
def xception_run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("mini_xception"), "mini_xception")


@pytest.fixture(scope="module")
def lenet(lenet_run):
    with serve_checkpoint(lenet_run / "checkpoint.npz", run_dir=lenet_run) as server:
        yield server


@pytest.fixture(scope="module")
def xception(xception_run):
    with serve_checkpoint(xception_run / "checkpoint.npz") as server:
        yield server


def still_serving(server) -> None:
    status, summary = get(server, "/api/model")
    assert status == 200 and summary["layers"]


def model_input(server, index: int) -> np.ndarray:
    subject = server.explorer.subject
    return subject.model_input(subject.test_pixels(index))


# ----------------------------------------------------------------------------------------------
# The numbers
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["lenet", "xception"])
def test_summary_names_the_layers_as_the_model_summary(which, request):
    server = request.getfixturevalue(which)
    model = server.explorer.subject.model
    status, summary = get(server, "/api/model")
    assert status == 200
    rows = models.trace(model, (1, 8, 8)).rows
    assert [layer["name"] for layer in summary["layers"]] == [row.name for row in rows]
    assert sorted(summary["conv_layers"]) == sorted(viz.conv_layer_names(model))
    assert summary["test_count"] == 359 and summary["drawing"] is True
    assert summary["classes"] == [str(d) for d in range(10)]


@pytest.mark.parametrize("which", ["lenet", "xception"])
def test_top_class_and_probabilities_are_the_models_prediction(which, request):
    server = request.getfixturevalue(which)
    model = server.explorer.subject.model
    for index in (0, 7, 358):
        status, result = get(server, f"/api/run?index={index}")
        assert status == 200
        predicted, probabilities = viz.class_prediction(model, model_input(server, index))
        assert result["top"] == int(predicted)
        np.testing.assert_allclose(result["probabilities"], probabilities, rtol=1e-6)
        assert result["top_name"] == str(int(predicted))
        assert [layer["name"] for layer in result["layers"]] == [
            layer.name for layer in server.explorer.layers
        ]


@pytest.mark.parametrize("which", ["lenet", "xception"])
def test_feature_maps_are_the_layer_outputs(which, request):
    server = request.getfixturevalue(which)
    model = server.explorer.subject.model
    _, result = get(server, "/api/run?index=3")
    x = model_input(server, 3)
    for layer in result["layers"]:
        if layer["kind"] != "maps":
            continue
        expected = viz.feature_maps(model, x, layer["name"])
        assert layer["shape"] == list(expected.shape)
        assert layer["png"].startswith("data:image/png;base64,")
        channel = len(expected) - 1
        status, values = get(
            server, f"/api/map?image={result['image']}&layer={layer['name']}&channel={channel}"
        )
        assert status == 200
        np.testing.assert_array_equal(values["values"], expected[channel])


def check_conv_equation(eq, conv, inp, out) -> None:
    """The window is the padded input, products are window x filter, sum == forward value."""
    (top, _), (left, _) = resolve_padding(
        conv.padding, inp.shape[1:], conv.kernel_size, conv.stride, conv.dilation
    )
    padded = np.pad(inp.astype(np.float64), ((0, 0), (top, top + 4), (left, left + 4)))
    o, y, x = eq["channel"], eq["y"], eq["x"]
    rows = y * conv.stride[0] + np.arange(conv.kernel_size[0]) * conv.dilation[0]
    cols = x * conv.stride[1] + np.arange(conv.kernel_size[1]) * conv.dilation[1]
    channels = eq["input_channels"]
    np.testing.assert_array_equal(eq["window"], padded[np.ix_(channels, rows, cols)])
    weights = conv.weight.data[o].astype(np.float64)
    np.testing.assert_array_equal(eq["weights"], weights)
    np.testing.assert_allclose(eq["products"], np.asarray(eq["window"]) * weights)
    outside = (rows - top < 0) | (rows - top >= inp.shape[1])
    outside = outside[:, None] | ((cols - left < 0) | (cols - left >= inp.shape[2]))[None]
    assert eq["padded"] == outside.tolist()
    assert eq["output"] == float(out[o, y, x])
    assert eq["sum"] == pytest.approx(eq["output"], rel=1e-5, abs=1e-6)
    bias = 0.0 if conv.bias is None else float(conv.bias.data[o])
    assert eq["sum"] == pytest.approx(sum(eq["channel_sums"]) + bias, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("which", ["lenet", "xception"])
def test_every_conv_equation_sums_to_the_forward_pass_value(which, request, rng):
    server = request.getfixturevalue(which)
    model = server.explorer.subject.model
    modules = dict(model.named_modules())
    _, result = get(server, "/api/run?index=5")
    x = model_input(server, 5)
    inputs = server.explorer._observation(result["image"]).inputs
    for name in viz.conv_layer_names(model):
        out = viz.feature_maps(model, x, name)
        c, h, w = out.shape
        for o, y, xx in [(0, 0, 0), (c - 1, h - 1, w - 1), (rng.integers(c), h // 2, w // 2)]:
            query = f"image={result['image']}&layer={name}&channel={o}&y={y}&x={xx}"
            status, eq = get(server, f"/api/equation?{query}")
            assert status == 200, eq
            layer = modules[name]
            if isinstance(layer, SeparableConv2d):
                assert eq["kind"] == "separable"
                depth = viz.feature_maps(model, x, f"{name}.depthwise")
                check_conv_equation(eq["pointwise"], layer.pointwise, depth, out)
                check_conv_equation(eq["depthwise"], layer.depthwise, inputs[name], depth)
                products = np.abs(eq["pointwise"]["channel_sums"])
                assert eq["depth_channel"] == int(np.argmax(products))
            else:
                check_conv_equation(eq, layer, inputs[name], out)
            assert eq["sum"] == pytest.approx(float(out[o, y, xx]), rel=1e-5, abs=1e-6)
    first = viz.conv_layer_names(model)[0]
    np.testing.assert_array_equal(inputs[first], x)


@settings(max_examples=25, deadline=None)
@given(
    channels=st.sampled_from([(1, 1, 1), (2, 4, 1), (4, 4, 4), (4, 6, 2), (3, 5, 1)]),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.one_of(
        st.sampled_from(["same", "valid"]), st.tuples(st.integers(0, 3), st.integers(0, 3))
    ),
    size=st.tuples(st.integers(5, 9), st.integers(5, 9)),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_the_equation_of_any_conv2d_is_its_output(
    channels, kernel, stride, dilation, padding, size, bias, seed
):
    """Property: for any Conv2d configuration the equation's window and sum are the output's."""
    c_in, c_out, groups = channels
    rng = np.random.default_rng(seed)
    if padding == "same":
        stride = (1, 1)
    conv = Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias, rng=rng)
    x = rng.standard_normal((c_in, *size)).astype(np.float32)
    span = [dilation[i] * (kernel[i] - 1) + 1 for i in range(2)]
    assume(padding != "valid" or min(size[i] - span[i] for i in range(2)) >= 0)
    if isinstance(padding, tuple):
        assume(min(size[i] + 2 * padding[i] - span[i] for i in range(2)) >= 0)
    out = conv(x)
    o, y, xx = (int(rng.integers(n)) for n in out.shape)
    check_conv_equation(view.conv_equation(conv, x, out, o, y, xx), conv, x, out)


def test_a_separable_equation_shows_any_depthwise_channel(xception):
    _, result = get(xception, "/api/run?index=1")
    query = f"image={result['image']}&layer=block2.rep.1&channel=5&y=1&x=2&depth_channel=17"
    status, eq = get(xception, f"/api/equation?{query}")
    assert status == 200
    assert eq["depth_channel"] == 17 and eq["depthwise"]["channel"] == 17
    assert eq["depthwise"]["sum"] == pytest.approx(eq["pointwise"]["window"][17][0][0], rel=1e-5)


def test_filters_saliency_and_grad_cam_come_from_viz(lenet):
    model = lenet.explorer.subject.model
    status, result = get(lenet, "/api/filters?layer=features.3")
    assert status == 200
    assert result["shape"] == list(viz.filters(model, "features.3").shape) == [16, 6, 5, 5]
    assert result["scale"] == pytest.approx(float(np.abs(viz.filters(model, "features.3")).max()))
    _, run_result = get(lenet, "/api/run?index=2")
    status, explained = get(lenet, f"/api/explain?image={run_result['image']}&class=4")
    assert status == 200
    cam, _ = viz.grad_cam(model, model_input(lenet, 2), "features.3", 4)
    assert explained["grad_cam"]["layer"] == "features.3"
    assert explained["grad_cam"]["shape"] == list(cam.shape)
    assert explained["grad_cam"]["max"] == pytest.approx(float(cam.max()))
    saliency = viz.saliency(model, model_input(lenet, 2), 4)
    assert explained["saliency"]["max"] == pytest.approx(float(saliency.max()))


@pytest.mark.parametrize("fmt, kind", [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_an_uploaded_image_is_prepared_as_cnnkit_predict_does(lenet, fmt, kind):
    subject = lenet.explorer.subject
    data = encode(subject.test_pixels(9), fmt)
    status, result = post_image(lenet, data, kind)
    assert status == 200, result
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("L").resize((8, 8))
    pixels = (np.asarray(image, np.float32) / 255)[None]
    predicted, probabilities = viz.class_prediction(subject.model, subject.model_input(pixels))
    assert result["top"] == int(predicted)
    np.testing.assert_allclose(result["probabilities"], probabilities, rtol=1e-6)
    assert result["image"].startswith("upload-") and fmt in result["label"]
    status, drawing = post_image(lenet, data, kind, "drawing")
    assert status == 200 and drawing["label"].startswith("drawing")


# ----------------------------------------------------------------------------------------------
# Refusals: every one a 4xx with a short message, and the server goes on
# ----------------------------------------------------------------------------------------------

TRAVERSALS = [
    "/../pyproject.toml",
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/static/../../cnnkit/io.py",
    "/app.js/../../../etc/passwd",
    "//etc/passwd",
    "/..%5c..%5cetc%5cpasswd",
    "/index.html%00.js",
    "/static/app.js",
    "/server.py",
    "/cnnkit/explore/server.py",
    "/api/../../etc/passwd",
]


def test_only_the_three_page_files_are_served(lenet):
    status, page = get(lenet, "/")
    assert status == 200 and b'<script src="app.js"' in page
    for path in ("/index.html", "/app.js", "/style.css"):
        assert get(lenet, path)[0] == 200
    for path in TRAVERSALS:
        status, body = get(lenet, path)
        assert status == 404, path
        assert set(body) == {"error"} and len(body["error"]) < 120
    still_serving(lenet)


def test_answers_carry_a_content_security_policy(lenet):
    connection = http.client.HTTPConnection("127.0.0.1", lenet.port, timeout=10)
    connection.request("GET", "/")
    response = connection.getresponse()
    response.read()
    policy = response.getheader("Content-Security-Policy")
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    connection.close()


def test_a_foreign_host_header_is_refused(lenet):
    status, body = send(lenet, "GET", "/api/model", headers={"Host": "attacker.example:80"})
    assert status == 403 and "Host" in body["error"]
    status, _ = send(lenet, "GET", "/api/model", headers={"Host": f"localhost:{lenet.port}"})
    assert status == 200


def test_an_oversized_upload_is_413_with_the_limit(lenet):
    status, body = post_image(lenet, b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert status == 413
    assert "2 MB" in body["error"] and f"{MAX_UPLOAD_BYTES + 1:,}" in body["error"]
    still_serving(lenet)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height grey pixels but holds one row of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (width + 1))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def gif_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty upload"),
        (b"this is not an image", "not a PNG or JPEG"),
        (gif_bytes(), "not a PNG or JPEG"),
        (encode(np.random.default_rng(0).random((1, 8, 8)))[:60], "cannot decode"),
        (png_header(5000, 5000), "over the limit of 16,777,216 pixels"),
        (png_header(30000, 30000), "decompression bomb"),
    ],
    ids=["empty", "text", "gif", "truncated", "too-many-pixels", "bomb"],
)
def test_malformed_uploads_are_400(lenet, data, fragment):
    status, body = post_image(lenet, data)
    assert status == 400
    assert fragment in body["error"], body
    still_serving(lenet)


def raw(server, text: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(text)
        connection.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_bad_requests_are_4xx(lenet):
    _, result = get(lenet, "/api/run?index=0")
    image = result["image"]
    cases = {
        "/api/equation?layer=features.0": (400, "missing query parameter 'image'"),
        f"/api/equation?image={image}&layer=features.0&channel=0&y=abc&x=0": (400, "integer"),
        f"/api/equation?image={image}&layer=features.0&channel=6&y=0&x=0": (400, "out of range"),
        f"/api/equation?image={image}&layer=features.0&channel=0&y=8&x=0": (400, "out of range"),
        f"/api/equation?image={image}&layer=nope&channel=0&y=0&x=0": (400, "unknown layer"),
        f"/api/equation?image={image}&layer=features.1&channel=0&y=0&x=0": (400, "ReLU"),
        "/api/equation?image=test-99&layer=features.0&channel=0&y=0&x=0": (404, "unknown image"),
        "/api/run?index=360": (404, "out of range"),
        "/api/run?index=-1": (404, "out of range"),
        f"/api/explain?image={image}&class=10": (400, "out of range"),
        f"/api/explain?image={image}&class=1&layer=flatten": (400, "feature maps"),
        f"/api/map?image={image}&layer=classifier.0&channel=0": (400, "no feature maps"),
        "/api/filters?layer=features.2": (400, "not a convolution"),
        "/api/nothing": (404, "no route"),
    }
    for path, (expected, fragment) in cases.items():
        status, body = get(lenet, path)
        assert (status, fragment in body["error"]) == (expected, True), (path, body)
    assert send(lenet, "PUT", "/api/model", b"x")[0] == 405
    assert send(lenet, "DELETE", "/")[0] == 405
    assert send(lenet, "POST", "/api/model", b"x", {"Content-Type": "image/png"})[0] == 405
    status, body = post_image(lenet, b"x", kind="text/plain")
    assert status == 415 and "PNG or JPEG" in body["error"]
    assert send(lenet, "POST", "/api/run?source=disk", b"x")[0] == 400
    no_length = raw(lenet, b"POST /api/run HTTP/1.1\r\n\r\n")
    assert no_length.startswith(b"HTTP/1.0 411")
    bad_length = raw(lenet, b"POST /api/run HTTP/1.1\r\nContent-Length: many\r\n\r\n")
    assert bad_length.startswith(b"HTTP/1.0 400")
    short = raw(
        lenet,
        b"POST /api/run HTTP/1.1\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\nabc",
    )
    assert short.startswith(b"HTTP/1.0 400") and b"upload ended after 3 of 100 bytes" in short
    assert raw(lenet, b"\x16\x03\x01 garbage\r\n\r\n").startswith(b"400 Bad")
    still_serving(lenet)


def test_a_slow_client_does_not_hold_up_the_others(lenet):
    with socket.create_connection(("127.0.0.1", lenet.port), timeout=10) as slow:
        slow.sendall(b"GET /api/model HTTP/1.1\r\nHo")
        started = time.perf_counter()
        still_serving(lenet)
        assert time.perf_counter() - started < 5


def test_many_concurrent_requests_are_all_answered(lenet, xception):
    _, first = get(lenet, "/api/run?index=0")
    one_map = f"/api/map?image={first['image']}&layer=features.0&channel=1"
    png = encode(lenet.explorer.subject.test_pixels(4))
    jobs = []
    for i in range(24):
        jobs += [
            (lenet, "GET", f"/api/run?index={i}", None, 200),
            (xception, "GET", f"/api/run?index={i}", None, 200),
            (lenet, "GET", one_map, None, 200),
            (lenet, "POST", "/api/run", png, 200),
            (lenet, "POST", "/api/run", b"junk", 400),
            (lenet, "GET", "/../etc/passwd", None, 404),
        ]

    def answer(job):
        server, method, path, body, _ = job
        headers = {"Content-Type": "image/png"} if body is not None else {}
        return send(server, method, path, body, headers)[0]

    with ThreadPoolExecutor(max_workers=24) as pool:
        statuses = list(pool.map(answer, jobs))
    assert statuses == [job[-1] for job in jobs]
    still_serving(lenet)
    still_serving(xception)


# ----------------------------------------------------------------------------------------------
# Files: read, never written; a run's curves follow its checkpoint
# ----------------------------------------------------------------------------------------------


def snapshot(folder) -> dict:
    return {
        path.name: (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.iterdir())
    }


def test_the_checkpoint_and_run_folder_are_never_written(lenet_run, lenet):
    before = snapshot(lenet_run)
    for path in ("/api/curves", "/api/run?index=11", "/api/filters?layer=features.0"):
        assert get(lenet, path)[0] == 200
    post_image(lenet, encode(np.zeros((1, 8, 8))))
    assert snapshot(lenet_run) == before


def test_curves_follow_a_run_that_is_still_training(tmp_path, lenet_run):
    run_dir = tmp_path / "live"
    run_dir.mkdir()
    trained = source.from_checkpoint(lenet_run / "checkpoint.npz")
    data = {
        "dataset": "digits",
        "image_shape": [1, 8, 8],
        "class_names": trained.class_names,
        "mean": trained.mean.ravel().tolist(),
        "std": trained.std.ravel().tolist(),
    }
    model = trained.model
    history = [{"epoch": 1, "loss": 2.0, "accuracy": 0.3}]
    state = {"metadata": {"data": data}, "epoch": 1, "history": history}
    save_checkpoint(run_dir / "checkpoint.npz", model, state)
    with serve_checkpoint(run_dir / "checkpoint.npz", run_dir=run_dir) as server:
        status, curves = get(server, "/api/curves")
        assert status == 200
        assert (curves["source"], curves["finished"], curves["epoch"]) == (
            "checkpoint.npz",
            False,
            1,
        )
        assert curves["history"] == history
        _, before = get(server, "/api/run?index=0")
        for p in model.parameters():
            p.data *= 0.5
        later = {**state, "epoch": 2, "history": [*history, {"epoch": 2, "loss": 1.0}]}
        save_checkpoint(run_dir / "checkpoint.npz", model, later)
        os.utime(run_dir / "checkpoint.npz", ns=(time.time_ns(), time.time_ns() + 10**9))
        _, curves = get(server, "/api/curves")
        assert curves["epoch"] == 2 and len(curves["history"]) == 2
        _, after = get(server, "/api/run?index=0")
        assert after["probabilities"] != before["probabilities"]
        (run_dir / "metrics.json").write_text(json.dumps({"history": later["history"]}))
        _, curves = get(server, "/api/curves")
        assert curves["source"] == "metrics.json" and curves["finished"] is True


def test_curves_need_a_run_folder(xception):
    status, body = get(xception, "/api/curves")
    assert status == 404 and "--run" in body["error"]


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------


def test_the_command_prints_its_url_and_serves_until_interrupted(lenet_run):
    command = [sys.executable, "-m", "cnnkit.explore", "--run", str(lenet_run), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "lenet5" in line and "http://127.0.0.1:" in line and "Ctrl-C" in line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        connection.request("GET", "/api/model")
        assert json.loads(connection.getresponse().read())["model"] == "lenet5"
        connection.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
        assert "warning" not in process.stderr.read()
    finally:
        process.kill()
        process.wait()


def test_only_a_loopback_host_goes_without_a_warning():
    assert host_warning("127.0.0.1") is None and host_warning("localhost") is None
    assert host_warning("::1") is None
    for host in ("0.0.0.0", "192.168.1.7", ""):
        assert "anyone who can reach this machine" in host_warning(host)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "say what to explore"),
        (["--checkpoint", "missing.npz"], "missing.npz does not exist"),
        (["--weights", "w.safetensors"], "--weights needs --model"),
        (["--model", "alexnet"], "unknown model 'alexnet'"),
        (["--model", "lenet5", "--checkpoint", "c.npz"], "not with --checkpoint"),
        (["--run", "no-such-run"], "run folder no-such-run does not exist"),
    ],
)
def test_errors_are_one_line_and_exit_status_2(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and err.startswith("cnnkit explore: error:")


def test_a_corrupt_checkpoint_and_a_run_without_one(capsys, tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["--checkpoint", str(tmp_path / "bad.npz")]) == 2
    assert "not a readable .npz" in capsys.readouterr().err
    assert main(["--run", str(tmp_path)]) == 2
    assert "has no checkpoint.npz yet" in capsys.readouterr().err


def test_an_untrained_model_on_the_digits(monkeypatch):
    subject = source.untrained("lenet5")
    assert subject.input_shape == (1, 8, 8) and len(subject.test_images) == 359
    assert "untrained" in subject.notes[0]

    def too_small(model, shape):
        raise ValueError("MaxPool2d kernel (2, 2) is larger than the padded input")

    monkeypatch.setattr(source.models, "trace", too_small)
    with pytest.raises(ExploreError, match="model 'vgg_small' cannot take the 8x8 digits"):
        source.untrained("vgg_small")


def test_imagenet_style_weights_take_uploads(tmp_path):
    model = models.get("lenet5", num_classes=1000, in_channels=3, input_size=28)
    save_weights(model, tmp_path / "lenet.safetensors")
    subject = source.from_weights("lenet5", tmp_path / "lenet.safetensors")
    assert subject.input_shape == (3, 28, 28) and subject.test_images is None
    assert len(subject.class_names) == 1000 and subject.class_names[0] != "class 0"
    pixels = np.random.default_rng(0).random((3, 40, 50))
    with serving(subject) as server:
        _, summary = get(server, "/api/model")
        assert summary["test_count"] == 0 and summary["drawing"] is False
        status, result = post_image(server, encode(pixels))
        assert status == 200
        import io

        from cnnkit.imagenet import preprocess

        x = preprocess(io.BytesIO(encode(pixels)), (28, 28), 3)
        predicted, _ = viz.class_prediction(subject.model, x)
        assert result["top"] == int(predicted)
        assert get(server, "/api/run?index=0")[0] == 404


def test_cnnkit_explore_is_a_cnnkit_command(capsys, tmp_path):
    from cnnkit.cli import main as cnnkit_main

    assert cnnkit_main(["explore", "--checkpoint", str(tmp_path / "none.npz"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnkit explore: error: checkpoint")
