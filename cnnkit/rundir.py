"""The run directory of `cnnkit train`: one run at a time, and never another program's files.

:class:`RunDirectory` is entered for the whole run. It creates the folder (and any missing
parents), takes the lock file ``.cnnkit-train.lock`` in it, and refuses the folder when:

- another live run holds the lock. The lock is an exclusive ``flock`` on that file, which the
  kernel releases when its process ends however it ends, so a crashed or killed run never leaves
  it blocking; the file records the holder's pid, host and start time for the message;
- it holds anything besides a run's own files (:data:`RUN_FILES`, and the temporary files of an
  atomic write that a killed run may leave), unless ``overwrite``;
- it holds a run's checkpoint and this run neither resumes from it nor may ``overwrite`` it.

On exit the lock is released, and on an error the folders it created are removed again if they
are still empty, so a refused or failed run leaves the file system as it found it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # no flock (Windows): the lock file is then written but not enforced
    fcntl = None

LOCK_NAME = ".cnnkit-train.lock"
CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.json"
PLOT_NAMES = ("curves", "confusion", "confusion-normalized", "filters")
RUN_FILES = frozenset(
    {CHECKPOINT_NAME, METRICS_NAME, LOCK_NAME, "tensorboard"}
    | {f"{name}.{suffix}" for name in PLOT_NAMES for suffix in ("png", "svg")}
)
# cnnkit.io.atomic_write's temporary files: ".<target name>.<random>.tmp".
TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[^.]+\.tmp$")


class RunDirectoryError(ValueError):
    """The output folder of a run cannot be used: not writable, in use, or holding other files."""


def is_run_file(name: str) -> bool:
    """Whether a file of this name in a run directory was written by `cnnkit train`."""
    match = TEMPORARY.match(name)
    return name in RUN_FILES or (match is not None and match["target"] in RUN_FILES)


def _holder(fd: int) -> str:
    """'pid N on HOST since TIME' from the lock file, or '' if it cannot be read."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {int(info['pid'])} on {info['host']} since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


class RunDirectory:
    """Context manager of a run's output folder; ``with RunDirectory(...) as out:``."""

    def __init__(self, path: str | os.PathLike, resume_here: bool = False, overwrite: bool = False):
        self.path = Path(path)
        self.resume_here = resume_here
        self.overwrite = overwrite
        self._created: list[Path] = []
        self._fd: int | None = None

    def __enter__(self) -> Path:
        path = self.path
        if path.exists() and not path.is_dir():
            raise RunDirectoryError(f"output directory {path} is a file, not a folder")
        missing = [p for p in (path, *path.parents) if not p.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunDirectoryError(
                f"output directory {path} is not writable ({error.strerror})"
            ) from None
        self._created = [p for p in missing if p.is_dir()]
        try:
            self._lock()
            self._check_contents()
        except BaseException:
            self.__exit__(True, None, None)
            raise
        return path

    def __exit__(self, failed, error, traceback) -> None:
        if self._fd is not None:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            os.close(self._fd)  # after the unlink: see _lock
            self._fd = None
        if failed:
            for folder in self._created:  # deepest first
                try:
                    folder.rmdir()
                except OSError:
                    break  # not empty (the run wrote something): keep it and its parents

    def _lock(self) -> None:
        """Take the lock file, or refuse while a live run holds it.

        A holder unlinks the file before it closes it, so a file opened just before that unlink
        may be locked by a newcomer after it: the newcomer then sees that the name no longer
        leads to the file it locked, and tries again with a new one.
        """
        lock = self.path / LOCK_NAME
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise RunDirectoryError(
                    f"output directory {self.path} is not writable ({error.strerror})"
                ) from None
            if fcntl is None:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder(fd)
                os.close(fd)
                raise RunDirectoryError(
                    f"output directory {self.path} is in use by another cnnkit train run"
                    f"{f' ({holder})' if holder else ''}; wait for it to end or choose "
                    "another --out"
                ) from None
            try:
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def _check_contents(self) -> None:
        if self.overwrite:
            return
        names = sorted(os.listdir(self.path))
        foreign = [name for name in names if not is_run_file(name)]
        if foreign:
            shown = ", ".join(foreign[:3]) + (
                f" and {len(foreign) - 3} more" if foreign[3:] else ""
            )
            raise RunDirectoryError(
                f"output directory {self.path} holds files that cnnkit train did not write "
                f"({shown}); choose another --out, or pass --overwrite to write into it anyway"
            )
        if CHECKPOINT_NAME in names and not self.resume_here:
            raise RunDirectoryError(
                f"output directory {self.path} already holds a run ({CHECKPOINT_NAME}); pass "
                f"--resume {self.path / CHECKPOINT_NAME}, --overwrite, or another --out"
            )
