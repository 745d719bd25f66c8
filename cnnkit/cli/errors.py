"""The command line's one rule for errors: cnnkit's own validation in one line, bugs in full.

An error is the user's (one line ``cnnkit COMMAND: error: MESSAGE``, exit status 2) when it is
one of cnnkit's error classes, an OSError (a file that cannot be read or written, which names
it), a MemoryError, or a ValueError/TypeError raised by a ``raise`` statement in cnnkit's own
code: the library's argument checks, whose messages name the argument, the value and what was
expected. Anything else, e.g. a TypeError raised inside NumPy, is a bug in cnnkit: its traceback
is printed with a line saying how to report it, and the exit status is 1.
"""

from __future__ import annotations

import linecache
import sys
import traceback
from pathlib import Path

import cnnkit
from cnnkit.cli.options import one_line
from cnnkit.data import DatasetError
from cnnkit.imagenet import ImageError
from cnnkit.io import CheckpointError
from cnnkit.recipe import RunError
from cnnkit.rundir import RunDirectoryError
from cnnkit.train import TrainingDiverged
from cnnkit.weights import WeightsError

PACKAGE = Path(cnnkit.__file__).resolve().parent


class UsageError(ValueError):
    """The command line asks for something that cannot be done."""


USER_ERRORS = (
    UsageError,
    RunError,
    RunDirectoryError,
    DatasetError,
    CheckpointError,
    TrainingDiverged,
    WeightsError,
    ImageError,
)


def raised_by_cnnkit(error: BaseException) -> bool:
    """Whether ``error`` comes from a ``raise`` statement in a module of the cnnkit package."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    try:
        inside = Path(filename).resolve().is_relative_to(PACKAGE)
    except (OSError, ValueError):
        inside = False
    return inside and linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise")


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` reports a mistake of the user's (see the module docstring)."""
    if isinstance(error, (*USER_ERRORS, OSError, MemoryError)):
        return True
    return isinstance(error, (ValueError, TypeError)) and raised_by_cnnkit(error)


def message(error: BaseException) -> str:
    """The one-line message of a user error."""
    if isinstance(error, MemoryError):
        return f"out of memory ({error})" if str(error) else "out of memory"
    return one_line(str(error) or type(error).__name__)


def report(command: str, error: BaseException) -> int:
    """Print ``error`` for `cnnkit COMMAND` and return the exit status (2 user error, 1 bug)."""
    if is_user_error(error):
        print(f"cnnkit {command}: error: {message(error)}", file=sys.stderr)
        return 2
    traceback.print_exception(error)
    print(
        f"cnnkit {command}: internal error ({type(error).__name__}): this is a bug in cnnkit "
        f"{cnnkit.__version__}; please report it to the cnnkit developers (the project's issue "
        "tracker) with the command line and the traceback above",
        file=sys.stderr,
    )
    return 1
