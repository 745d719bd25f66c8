"""The parser of every `cnnkit` sub-command and :func:`main`, the command line's error boundary."""

from __future__ import annotations

import argparse
import sys

from cnnkit import __version__
from cnnkit.allocator import keep_freed_memory
from cnnkit.cli import datasets, evaluate, gradcheck, models, plot, predict, summary, train
from cnnkit.cli.errors import USER_ERRORS
from cnnkit.cli.options import OneLineParser

COMMANDS = {
    "train": train,
    "evaluate": evaluate,
    "predict": predict,
    "summary": summary,
    "gradcheck": gradcheck,
    "models": models,
    "datasets": datasets,
    "plot": plot,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = OneLineParser(
        prog="cnnkit",
        description="Convolutional neural networks in readable NumPy: train, evaluate, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True
    for command in COMMANDS.values():
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `cnnkit` command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        return COMMANDS[args.command].run(args)
    except USER_ERRORS as error:
        print(f"cnnkit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnkit {args.command}: interrupted", file=sys.stderr)
        return 130
