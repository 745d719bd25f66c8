"""The explorer's local web server: Python's http.server, a few JSON routes, three static files.

Routes (every answer is JSON except the page itself):

- ``GET /``, ``/app.js``, ``/style.css``: the page, from the package's ``static/`` folder. Only
  these three files are served; any other path is 404, so no path can reach another file.
- ``GET /api/model``: the model summary (layers as ``cnnkit.models.trace`` names them).
- ``GET /api/run?index=N``: run test image N; ``POST /api/run?source=upload|drawing`` with a PNG
  or JPEG body (at most 2 MB): run that image. Both answer the probabilities, the top class and
  every layer's feature maps, with an image id for the routes below.
- ``GET /api/layer?image=ID&layer=L``: more of one layer's maps, larger;
  ``GET /api/map?image=ID&layer=L&channel=C``: the exact values of one feature map.
- ``GET /api/equation?image=ID&layer=L&channel=C&y=Y&x=X[&depth_channel=D]``: the sum behind one
  conv output value.
- ``GET /api/filters?layer=L``; ``GET /api/explain?image=ID&class=K[&layer=L]`` (saliency and
  Grad-CAM); ``GET /api/curves`` (a run's history, with ``--run``).

A bad request gets a 4xx answer ``{"error": "..."}`` and the server goes on; an unexpected
failure is a 500 with one line, its traceback on stderr. Model work is serialised by one lock
(layers keep per-call state), at most ``MAX_CONNECTIONS`` requests are handled at once, every
socket has a timeout, and while bound to a loopback address the Host header must name it
(against DNS rebinding). Nothing is written to disk.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import threading
import traceback
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from cnnkit.explore import view
from cnnkit.explore.images import MAX_UPLOAD_BYTES, UploadError, decode_upload, limit_text
from cnnkit.explore.source import Subject, run_history
from cnnkit.viz import VizError

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_CONNECTIONS = 16
SOCKET_TIMEOUT = 20
KEPT_IMAGES = 32
KEPT_OBSERVATIONS = 2
UPLOAD_TYPES = ("image/png", "image/jpeg", "application/octet-stream")


class ApiError(Exception):
    """A request that cannot be answered: an HTTP status and a short message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only (127.x.y.z, localhost, ::1)."""
    return host in LOOPBACK or host.startswith("127.")


class Explorer:
    """The state behind the routes: the subject, its layers, the images seen, the model lock."""

    def __init__(self, subject: Subject):
        self.subject = subject
        self.layers = view.layers_of(subject.model, subject.input_shape)
        self.lock = threading.Lock()
        self.images: OrderedDict[str, tuple[np.ndarray, str]] = OrderedDict()
        self.observations: OrderedDict[str, view.Observation] = OrderedDict()
        self.history_stamp, self.history = None, None

    def _refresh(self) -> None:
        if self.subject.refresh():
            self.observations.clear()

    def summary(self) -> dict:
        """The model summary (GET /api/model)."""
        with self.lock:
            self._refresh()
            return view.describe(self.subject, self.layers)

    def _keep(self, image_id: str, pixels: np.ndarray, label: str) -> None:
        self.images[image_id] = (pixels, label)
        self.images.move_to_end(image_id)
        while len(self.images) > KEPT_IMAGES:
            self.images.popitem(last=False)

    def _image(self, image_id: str) -> tuple[np.ndarray, str]:
        if image_id not in self.images:
            raise ApiError(404, f"unknown image {image_id!r}: run the image again")
        return self.images[image_id]

    def _observation(self, image_id: str) -> view.Observation:
        pixels, _ = self._image(image_id)
        if image_id not in self.observations:
            x = self.subject.model_input(pixels)
            self.observations[image_id] = view.observe(self.subject.model, self.layers, x)
            while len(self.observations) > KEPT_OBSERVATIONS:
                self.observations.popitem(last=False)
        self.observations.move_to_end(image_id)
        return self.observations[image_id]

    def run(self, image_id: str, pixels: np.ndarray, label: str) -> dict:
        """Run one image (pixels in [0, 1]) and keep it under ``image_id`` for later routes."""
        with self.lock:
            self._refresh()
            self._keep(image_id, pixels, label)
            self.observations.pop(image_id, None)
            seen = self._observation(image_id)
            return view.run_view(self.subject, self.layers, seen, pixels, image_id, label)

    def run_test(self, index: int) -> dict:
        """Run test image ``index`` (GET /api/run)."""
        try:
            pixels = self.subject.test_pixels(index)
        except IndexError as error:
            raise ApiError(404, str(error)) from None
        label = self.subject.test_labels[index]
        name = self.subject.class_names[label] if label < len(self.subject.class_names) else label
        return self.run(f"test-{index}", pixels, f"test image {index} (labelled {name})")

    def run_upload(self, data: bytes, source: str) -> dict:
        """Decode and run an uploaded or drawn image (POST /api/run)."""
        try:
            image = decode_upload(data)
        except UploadError as error:
            raise ApiError(400, str(error)) from None
        pixels = self.subject.pixels_from_image(image)
        digest = hashlib.sha256(pixels.tobytes()).hexdigest()[:16]
        what = "drawing" if source == "drawing" else f"uploaded {image.format} image"
        label = f"{what}, {image.width} x {image.height} px, resized to the model's input"
        return self.run(f"{source}-{digest}", pixels, label)

    def channel(self, image_id: str, layer: str, channel: int) -> dict:
        """The exact values of one feature map (GET /api/map)."""
        with self.lock:
            return view.channel_values(self.layers, self._observation(image_id), layer, channel)

    def layer(self, image_id: str, layer: str) -> dict:
        """One layer's maps for the layer view (GET /api/layer)."""
        with self.lock:
            return view.layer_view(self.layers, self._observation(image_id), layer)

    def equation(self, image_id: str, layer: str, channel, y, x, depth_channel) -> dict:
        """The equation of one conv output value (GET /api/equation)."""
        with self.lock:
            seen = self._observation(image_id)
            return view.equation_view(self.layers, seen, layer, channel, y, x, depth_channel)

    def filters(self, layer: str) -> dict:
        """The filters of a conv layer (GET /api/filters)."""
        with self.lock:
            return view.filters_view(self.subject.model, self.layers, layer)

    def explain(self, image_id: str, target: int, layer: str | None) -> dict:
        """Saliency and Grad-CAM of class ``target`` (GET /api/explain)."""
        with self.lock:
            pixels, _ = self._image(image_id)
            x = self.subject.model_input(pixels)
            return view.explain_view(self.subject, self.layers, x, target, layer)

    def curves(self) -> dict:
        """The run's per-epoch history, re-read when its files change (GET /api/curves)."""
        run_dir = self.subject.run_dir
        if run_dir is None:
            raise ApiError(404, "no training run: start the explorer with --run DIR")
        with self.lock:
            self._refresh()
            stamp = tuple(_mtime(run_dir / name) for name in ("metrics.json", "checkpoint.npz"))
            if stamp != self.history_stamp:
                self.history, self.history_stamp = run_history(run_dir), stamp
            return {**self.history, "epoch": self.subject.epoch, "run": str(run_dir)}


def _mtime(path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _integer(query: dict, name: str, default=None):
    text = query.get(name)
    if text is None:
        if default is not None or name == "depth_channel":
            return default
        raise ApiError(400, f"missing query parameter {name!r}")
    try:
        return int(text)
    except ValueError:
        raise ApiError(
            400, f"query parameter {name!r} must be an integer, got {text[:40]!r}"
        ) from None


def _text(query: dict, name: str) -> str:
    if not query.get(name):
        raise ApiError(400, f"missing query parameter {name!r}")
    return query[name]


def _static_files() -> dict[str, bytes]:
    folder = resources.files("cnnkit.explore") / "static"
    return {name: (folder / name).read_bytes() for name, _ in STATIC.values()}


class Handler(BaseHTTPRequestHandler):
    """One request: static page files or the JSON routes of :class:`Explorer`."""

    server_version = "cnnkit-explore"
    timeout = SOCKET_TIMEOUT
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        """Requests are not logged (errors are, by ``_fail``)."""

    def do_GET(self):
        """Answer a GET request."""
        self._handle("GET")

    def do_POST(self):
        """Answer a POST request (an image upload)."""
        self._handle("POST")

    def _refuse_method(self):
        self._send_json(405, {"error": f"method {self.command} is not allowed; use GET or POST"})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse_method

    def _handle(self, method: str) -> None:
        try:
            self._check_host()
            parts = urlsplit(self.path)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            if parts.path.startswith("/api/"):
                self._send_json(200, self._api(method, parts.path, query))
            elif method == "GET" and parts.path in STATIC:
                name, kind = STATIC[parts.path]
                self._send(200, self.server.static[name], kind)
            else:
                raise ApiError(404, f"not found: {parts.path[:80]}")
        except ApiError as error:
            self._send_json(error.status, {"error": error.message})
        except (view.ViewError, VizError) as error:
            self._send_json(400, {"error": str(error)})
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as error:
            self._fail(error)

    def _check_host(self) -> None:
        host = self.headers.get("Host")
        if host is not None and self.server.allowed_hosts and host not in self.server.allowed_hosts:
            raise ApiError(403, f"unexpected Host header {host[:60]!r}")

    def _api(self, method: str, path: str, query: dict) -> dict:
        explorer = self.server.explorer
        if method == "POST":
            if path != "/api/run":
                raise ApiError(405, f"{path} takes GET, not POST")
            source = query.get("source", "upload")
            if source not in ("upload", "drawing"):
                raise ApiError(400, f"source must be 'upload' or 'drawing', got {source[:40]!r}")
            return explorer.run_upload(self._body(), source)
        if path == "/api/model":
            return explorer.summary()
        if path == "/api/run":
            return explorer.run_test(_integer(query, "index", 0))
        if path == "/api/map":
            return explorer.channel(
                _text(query, "image"), _text(query, "layer"), _integer(query, "channel")
            )
        if path == "/api/layer":
            return explorer.layer(_text(query, "image"), _text(query, "layer"))
        if path == "/api/equation":
            return explorer.equation(
                _text(query, "image"),
                _text(query, "layer"),
                _integer(query, "channel"),
                _integer(query, "y"),
                _integer(query, "x"),
                _integer(query, "depth_channel"),
            )
        if path == "/api/filters":
            return explorer.filters(_text(query, "layer"))
        if path == "/api/explain":
            return explorer.explain(
                _text(query, "image"), _integer(query, "class"), query.get("layer") or None
            )
        if path == "/api/curves":
            return explorer.curves()
        raise ApiError(404, f"no route {path[:80]}")

    def _body(self) -> bytes:
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise ApiError(411, "an upload needs a Content-Length header")
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            raise ApiError(400, f"bad Content-Length {length_text[:40]!r}")
        if length > MAX_UPLOAD_BYTES:
            self._discard(length)
            raise ApiError(413, f"upload of {length:,} bytes is over the limit of {limit_text()}")
        if kind not in UPLOAD_TYPES:
            self._discard(length)
            raise ApiError(415, f"expected a PNG or JPEG image body, got {kind or 'no type'!r}")
        data = self.rfile.read(length)
        if len(data) != length:
            raise ApiError(400, f"upload ended after {len(data):,} of {length:,} bytes")
        return data

    def _discard(self, length: int) -> None:
        """Read (and drop) a refused body of modest size, so the client sees the answer."""
        if length > 4 * MAX_UPLOAD_BYTES:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)

    def _fail(self, error: Exception) -> None:
        print(f"cnnkit explore: error answering {self.path[:200]}:", file=sys.stderr)
        traceback.print_exc()
        try:
            self._send_json(500, {"error": f"internal error: {type(error).__name__}"})
        except OSError:
            pass

    def _send_json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class ExploreServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that answers at most MAX_CONNECTIONS requests at a time."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, explorer: Explorer, host: str = "127.0.0.1", port: int = 0):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.explorer = explorer
        self.static = _static_files()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__((host, port), Handler)
        self.host, self.port = host, self.server_address[1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.url = (
            f"http://[{shown}]:{self.port}/" if ":" in shown else f"http://{shown}:{self.port}/"
        )
        names = ("127.0.0.1", "localhost", "[::1]") if is_loopback(host) else ()
        self.allowed_hosts = {f"{name}:{self.port}" for name in names}

    def process_request(self, request, client_address):
        """Wait for a free slot, then handle the request in a thread."""
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        """Handle one request, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(subject: Subject, host: str = "127.0.0.1", port: int = 0) -> ExploreServer:
    """A server for ``subject`` bound to ``host``:``port`` (0: a free port); not yet serving."""
    return ExploreServer(Explorer(subject), host, port)


def serve_in_thread(server: ExploreServer) -> threading.Thread:
    """Start ``server.serve_forever`` in a daemon thread (stop it with ``server.shutdown()``)."""
    thread = threading.Thread(target=server.serve_forever, name="cnnkit-explore", daemon=True)
    thread.start()
    return thread
