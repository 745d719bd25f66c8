"""Shared by the explorer tests: short training runs, a server in a thread, raw HTTP requests."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cnnkit.explore import make_server, serve_in_thread, source
from cnnkit.recipe import TrainSettings, run


def train_run(out: Path, model: str, epochs: int = 1, dataset="digits", data_dir=None) -> Path:
    """A `cnnkit train` run of ``model`` (default: on the bundled 8x8 digits); its run folder."""
    settings = TrainSettings(
        model=model,
        dataset=dataset,
        data_dir=None if data_dir is None else str(data_dir),
        epochs=epochs,
        out=str(out),
        progress=False,
        batch_size=64,
    )
    run(settings)
    return out


@contextlib.contextmanager
def serving(subject):
    """A running explorer server for ``subject`` on 127.0.0.1 (a free port)."""
    server = make_server(subject)
    thread = serve_in_thread(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def serve_checkpoint(path, run_dir=None):
    """``serving`` the model of a checkpoint (with its run folder)."""
    return serving(source.from_checkpoint(path, run_dir=run_dir))


def send(server, method: str, path: str, body: bytes | None = None, headers=None):
    """(status, payload) of one request; the payload is parsed JSON, or bytes for the page."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(data) if kind == "application/json" else data
    finally:
        connection.close()


def get(server, path: str):
    """``send`` a GET."""
    return send(server, "GET", path)


def post_image(server, data: bytes, kind: str = "image/png", source_name: str = "upload"):
    """POST an image body to /api/run."""
    return send(server, "POST", f"/api/run?source={source_name}", data, {"Content-Type": kind})


def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    """Pixels (C, H, W) in [0, 1] as PNG or JPEG bytes (8 bits a channel)."""
    pixels = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    image = pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt)
    return buffer.getvalue()
