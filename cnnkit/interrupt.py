"""Stopping training cleanly on a signal: Ctrl-C (SIGINT) or SIGTERM at a step boundary.

:class:`StopSignals` turns the first signal into a flag that cnnkit.train.Trainer reads after
each step; the trainer then writes a checkpoint of that exact point and raises
:class:`TrainingInterrupted`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class TrainingInterrupted(Exception):
    """A signal stopped training at a step boundary; ``checkpoint`` holds that exact point."""

    def __init__(self, signum: int, epoch: int, step: int, steps: int, checkpoint: Path | None):
        self.signum, self.epoch, self.step, self.steps = signum, epoch, step, steps
        self.checkpoint = checkpoint
        where = f"epoch {epoch}, step {step} of {steps}" if step else f"the end of epoch {epoch}"
        saved = f"checkpoint {checkpoint} holds" if checkpoint else "no checkpoint path to save"
        super().__init__(
            f"interrupted by {signal.Signals(signum).name} at {where}; {saved} that point"
        )


class StopSignals:
    """While entered, SIGINT and SIGTERM set :attr:`received` instead of stopping the process.

    A second signal restores the previous handlers and is delivered again, so that it stops at
    once (KeyboardInterrupt for SIGINT, the default action for SIGTERM). Outside the main thread
    no handler can be installed and signals behave as usual; a signal the process ignores (as
    under nohup) stays ignored.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup, `cmd &` in a script
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum
            return
        self.__exit__()
        signal.raise_signal(signum)

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
