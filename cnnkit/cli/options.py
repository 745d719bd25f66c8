"""Argument types of the command line and the parser whose errors are one line.

Each type turns one option's text into its value or raises ``argparse.ArgumentTypeError`` with
what was expected and the text it got; argparse prefixes the option's name, so every error reads
``cnnkit train: error: argument --lr: expected a finite number > 0, got 'nan'``. Integers are
plain ASCII digits within int64 (what a checkpoint's JSON and NumPy hold); numbers are finite.
"""

from __future__ import annotations

import argparse
import json
import math
import re

from cnnkit import models

INT64_MAX = 2**63 - 1
C_INT_MAX = 2**31 - 1
# An input of more values than this (3 x 4,730 x 4,730 for an RGB image) is refused before a
# model is asked to run on it: 256 MiB in float32 for one image.
MAX_INPUT_VALUES = 2**26
# Classifier outputs: more than any label set in use (ImageNet-21k has 21,843 classes), few enough
# that a model's last layer fits in memory.
MAX_CLASSES = 100_000
_INTEGER = re.compile(r"[+-]?[0-9]+")
NEGATIVE_NUMBER = re.compile(
    r"^-(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf|infinity|nan)$", re.I
)


def one_line(message: str) -> str:
    """``message`` on one line: line breaks and other unprintable characters (from the values
    echoed in it) written as escapes, e.g. a carriage return as ``\\r``."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
        for c in message
    )


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr with exit status 2.

    Words such as ``-1e-4``, ``-inf`` and ``-nan`` are taken as (negative) option values, so
    that their error names the option's expectation; argparse itself only knows ``-3``, ``-.5``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str):
        self.exit(2, one_line(f"{self.prog}: error: {message} (see {self.prog} --help)") + "\n")


def _show(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _interval(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {_show(low)}"
    if low is None:
        return f"{'<' if high_open else '<='} {_show(high)}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"in {left}{_show(low)}, {_show(high)}{right}"


def integer(minimum: int, maximum: int = INT64_MAX):
    """A parser of integers in [minimum, maximum] (ASCII digits, optional sign)."""
    if maximum == INT64_MAX:
        expected = f"expected an integer >= {minimum}"
    else:
        expected = f"expected an integer {_interval(minimum, maximum)}"

    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text):
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
        value = int(text)
        if value > maximum == INT64_MAX:
            raise argparse.ArgumentTypeError(
                f"{expected} that fits in 64 bits (at most 2**63 - 1), got {text!r}"
            )
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def number(
    minimum: float,
    maximum: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
):
    """A parser of finite numbers in the interval given (open or closed at either end)."""
    expected = f"expected a finite number {_interval(minimum, maximum, low_open, high_open)}"

    def parse(text: str) -> float:
        try:
            value = float(text) if text.isascii() else math.nan
        except ValueError:
            value = math.nan
        below = value <= minimum if low_open else value < minimum
        above = maximum is not None and (value >= maximum if high_open else value > maximum)
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def text(what: str):
    """A parser of non-empty text (a path or a name), ``what`` naming it in the error."""

    def parse(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
        return value

    parse.__name__ = "text"
    return parse


def shape(value: str) -> tuple[int, int, int]:
    """C,H,W of one input, e.g. ``1,28,28``, of at most MAX_INPUT_VALUES values."""
    parts = value.split(",")
    if len(parts) != 3 or not all(_INTEGER.fullmatch(p.strip()) for p in parts):
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 1,28,28, got {value!r}")
    dims = tuple(int(p) for p in parts)
    if min(dims) < 1:
        raise argparse.ArgumentTypeError(
            f"expected C,H,W of positive integers such as 1,28,28, got {value!r}"
        )
    if math.prod(dims) > MAX_INPUT_VALUES:
        raise argparse.ArgumentTypeError(
            f"expected C,H,W of at most {MAX_INPUT_VALUES:,} values in all, got {value!r} "
            f"({math.prod(dims):,})"
        )
    return dims


def _no_constant(name: str):
    raise ValueError(name)


def json_object(value: str) -> dict:
    """A JSON object such as ``{"width": 0.5}``, without NaN or Infinity."""
    try:
        parsed = json.loads(value, parse_constant=_no_constant)
    except ValueError:  # json.JSONDecodeError and the constants refused above
        parsed = None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(
            f'expected a JSON object of finite values such as {{"width": 0.5}}, got {value!r}'
        )
    return parsed


def model_name(value: str) -> str:
    """A name of the model zoo."""
    if value not in models.list():
        raise argparse.ArgumentTypeError(
            f"unknown model {value!r}; choose from {', '.join(models.list())}"
        )
    return value


POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
SEED = integer(0)
FILE = text("a file name")
FOLDER = text("a folder name")
