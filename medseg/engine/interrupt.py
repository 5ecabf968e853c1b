"""Training that can be interrupted: SIGINT/SIGTERM finish the current step, checkpoint and stop.

The first signal sets :attr:`StopRequest.requested`; the training loop finishes its step, writes
``checkpoints/last`` (with the step count of the unfinished epoch) and raises :class:`TrainingInterrupted`,
which the CLI turns into ``interrupted at epoch N (iteration k); continue with: ... --resume`` and exit 130.
A second signal exits at once (``KeyboardInterrupt``). Under torchrun the handlers are not installed (the
ranks would stop at different steps); the signal then ends the processes as before.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

from medseg.progress import console

#: exit status of a run stopped by a signal (128 + SIGINT), as shells report Ctrl-C
INTERRUPTED_EXIT = 130


class TrainingInterrupted(Exception):
    """Training stopped on a signal after checkpointing: ``epoch`` (1-based, unfinished) and ``iteration``
    (steps of it done), the run folder to resume."""

    def __init__(self, run_dir: str, epoch: int, iteration: int) -> None:
        super().__init__(f"interrupted at epoch {epoch} (iteration {iteration})")
        self.run_dir, self.epoch, self.iteration = run_dir, epoch, iteration


def resume_command(argv: list[str] | None = None) -> str:
    """The command line that continues this run: ``medseg`` + its arguments, ``--force`` dropped, ``--resume`` added."""
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a not in ("--force", "--resume")]
    return shlex.join(["medseg", *args, "--resume"])


class StopRequest:
    """While open, SIGINT and SIGTERM ask the loop to stop after its step (``requested``); a second one
    raises ``KeyboardInterrupt`` at once. Installs nothing outside the main thread or when ``enabled`` is off."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            console.print(f"{signal.Signals(signum).name} again: exiting now, without a checkpoint of this epoch")
            raise KeyboardInterrupt
        self.requested = signum
        console.print(f"{signal.Signals(signum).name}: stopping after this step and writing a checkpoint (again to exit at once)")


__all__ = ["INTERRUPTED_EXIT", "StopRequest", "TrainingInterrupted", "resume_command"]
