"""The parser of every `cnnkit` sub-command and :func:`main`, the command line's error boundary."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from cnnkit import __version__
from cnnkit.allocator import keep_freed_memory
from cnnkit.cli import (
    datasets,
    evaluate,
    explore,
    export,
    gradcheck,
    models,
    plot,
    predict,
    summary,
    train,
)
from cnnkit.cli.errors import report
from cnnkit.cli.options import OneLineParser, one_line

COMMANDS = {
    "train": train,
    "evaluate": evaluate,
    "predict": predict,
    "summary": summary,
    "gradcheck": gradcheck,
    "models": models,
    "datasets": datasets,
    "plot": plot,
    "explore": explore,
    "export": export,
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


def innermost(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The parser of the (sub-)command that ``args`` chose, e.g. that of `cnnkit plot curves`."""
    while True:
        chosen = [
            action.choices[getattr(args, action.dest)]
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None)
        ]
        if not chosen:
            return parser
        parser = chosen[0]


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse a command line; words nothing takes are refused by the sub-command they follow,
    so that the error reads `cnnkit train: error: unrecognized arguments: ...`."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        innermost(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def one_line_warnings(command: str):
    """A warnings.showwarning that prints ``cnnkit COMMAND: warning: MESSAGE`` on one line."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = one_line(f"cnnkit {command}: warning: {message}")
        print(text, file=sys.stderr if file is None else file)

    return show


def main(argv: list[str] | None = None) -> int:
    """Run the `cnnkit` command line; returns the exit status.

    Argument errors exit (SystemExit 2) while parsing, in one line. Every other error goes
    through :func:`cnnkit.cli.errors.report`: one line and status 2 for the user's mistakes, the
    traceback and how to report it with status 1 for a bug. Ctrl-C outside training: status 130.
    A reader of the output that stops early (``cnnkit summary ... | head``) ends the command
    quietly, as for other Unix tools.
    """
    args = parse(argv)
    keep_freed_memory()
    with warnings.catch_warnings():
        warnings.showwarning = one_line_warnings(args.command)
        try:
            return COMMANDS[args.command].run(args)
        except KeyboardInterrupt:
            print(f"cnnkit {args.command}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except Exception as error:  # noqa: BLE001 - the one boundary of the command line
            return report(args.command, error)
