"""`cnnkit explore`: a local web page that shows a trained network at work on one image.

The page (plain HTML, CSS and JavaScript shipped in ``static/``, nothing fetched from elsewhere)
shows the layers left to right as the model summary names them, each layer's feature maps, the
filters of a conv layer, the class probabilities, saliency and Grad-CAM of a chosen class, and on
a click the equation behind one conv output value with the real numbers (CNN Explainer, Wang et
al., IEEE VIS 2020). Start it with ``cnnkit explore --checkpoint PATH`` (``--run DIR`` adds the
training curves), ``--model NAME --weights FILE``, ``--onnx FILE``, or ``--model NAME`` for an
untrained model.

:func:`main` is the command (``python -m cnnkit.explore``); :func:`add_arguments` puts its
options on any argparse parser and :func:`command` runs parsed arguments, for `cnnkit explore`.
"""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser
from pathlib import Path

from cnnkit import models
from cnnkit.data import DatasetError
from cnnkit.explore import source
from cnnkit.explore.server import ExploreServer, is_loopback, make_server, serve_in_thread
from cnnkit.explore.source import ExploreError, Subject
from cnnkit.io import CheckpointError
from cnnkit.weights import LAYOUTS, WeightsError

__all__ = [
    "ExploreError",
    "ExploreServer",
    "Subject",
    "add_arguments",
    "command",
    "host_warning",
    "load_subject",
    "main",
    "make_server",
    "serve_in_thread",
    "serve_training_run",
]

ERRORS = (ExploreError, CheckpointError, WeightsError, DatasetError, OSError)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of `cnnkit explore` to ``parser``; returns it."""
    parser.add_argument(
        "--checkpoint", metavar="PATH", help="checkpoint.npz of a `cnnkit train` run"
    )
    parser.add_argument(
        "--run",
        metavar="DIR",
        help="a training run folder: its checkpoint.npz, and the training curves, refreshed "
        "while training goes on",
    )
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="zoo model: with --weights, an ImageNet model from that file; alone, the "
        "untrained model on the 8x8 digits",
    )
    parser.add_argument(
        "--weights", metavar="FILE", help="with --model: weights (.safetensors/.npz)"
    )
    parser.add_argument("--onnx", metavar="FILE", help="an ONNX model file (needs the onnx extra)")
    parser.add_argument(
        "--layout",
        choices=("auto", *LAYOUTS),
        default="auto",
        help="with --weights: the file's names (default auto)",
    )
    parser.add_argument("--data-dir", help="folder holding the data sets (default $CNNKIT_DATA)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    parser.add_argument("--open", action="store_true", help="open the page in a web browser")
    return parser


def host_warning(host: str) -> str | None:
    """The warning printed when ``host`` lets other machines reach the explorer, else None."""
    if is_loopback(host):
        return None
    return (
        f"warning: listening on {host or 'every address'}: anyone who can reach this machine "
        "on the network can open the explorer and upload images to it"
    )


def load_subject(args: argparse.Namespace) -> Subject:
    """The model the arguments name (see cnnkit.explore.source)."""
    if args.weights and not args.model:
        raise ExploreError("--weights needs --model NAME (e.g. --model xception)")
    if args.model and args.model not in models.list():
        raise ExploreError(f"unknown model {args.model!r}; choose from {', '.join(models.list())}")
    if args.model and (args.checkpoint or args.run):
        raise ExploreError("--model goes with --weights (or alone), not with --checkpoint or --run")
    if args.onnx and (args.model or args.checkpoint or args.run):
        raise ExploreError("--onnx goes alone, not with --model, --checkpoint or --run")
    if args.onnx:
        return source.from_onnx(args.onnx, args.data_dir)
    if args.model:
        if args.weights:
            return source.from_weights(args.model, args.weights, args.layout)
        return source.untrained(args.model)
    if args.run:
        run_dir = Path(args.run)
        if not run_dir.is_dir():
            raise ExploreError(f"run folder {run_dir} does not exist")
        checkpoint = args.checkpoint or run_dir / source.CHECKPOINT_NAME
        if not Path(checkpoint).is_file():
            raise ExploreError(
                f"run folder {run_dir} has no {source.CHECKPOINT_NAME} yet (it is written after "
                "the first epoch)"
            )
        return source.from_checkpoint(checkpoint, args.data_dir, run_dir)
    if args.checkpoint:
        return source.from_checkpoint(args.checkpoint, args.data_dir)
    raise ExploreError(
        "say what to explore: --checkpoint PATH, --run DIR, --model NAME or --onnx FILE"
    )


def serve_training_run(run_dir, model, data: dict, port: int, data_dir=None) -> ExploreServer:
    """Serve the explorer on 127.0.0.1 for a run about to train (`cnnkit train --explore`), in a
    daemon thread: a copy of ``model``, reloaded from each checkpoint the run writes."""
    server = make_server(source.from_training(run_dir, model, data, data_dir), "127.0.0.1", port)
    serve_in_thread(server)
    return server


def command(args: argparse.Namespace, prog: str = "cnnkit explore") -> int:
    """Serve the explorer for parsed arguments until Ctrl-C; 2 (one line) on a user error."""
    try:
        subject = load_subject(args)
        server = make_server(subject, args.host, args.port)
    except ERRORS as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    warning = host_warning(args.host)
    if warning:
        print(f"{prog}: {warning}", file=sys.stderr)
    print(f"{prog}: {subject.name} ({subject.origin}) at {server.url} (Ctrl-C stops)", flush=True)
    if args.open:
        threading.Timer(0.5, webbrowser.open, (server.url,)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print(f"{prog}: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `cnnkit explore` with its own command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="cnnkit explore",
        description="Serve a local web page that shows a network at work on one image.",
    )
    return command(add_arguments(parser).parse_args(argv))
