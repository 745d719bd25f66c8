"""Argument types of the command line and the parser whose errors are one line."""

from __future__ import annotations

import argparse
import json

from cnnkit import models


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr with exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def shape(text: str) -> tuple[int, int, int]:
    """C,H,W of one input, e.g. ``1,28,28``."""
    try:
        value = tuple(int(v) for v in text.split(","))
    except ValueError:
        value = ()
    if len(value) != 3 or min(value) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 1,28,28, got {text!r}")
    return value


def positive(kind):
    """A parser of positive numbers of ``kind`` (int or float)."""

    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def json_object(text: str) -> dict:
    """A JSON object such as ``{"width": 0.5}``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f'expected a JSON object such as {{"width": 0.5}}, got {text!r}'
        )
    return value


def model_name(text: str) -> str:
    """A name of the model zoo."""
    if text not in models.list():
        raise argparse.ArgumentTypeError(
            f"unknown model {text!r}; choose from {', '.join(models.list())}"
        )
    return text
