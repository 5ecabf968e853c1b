"""Errors meant for users: one actionable line each; the CLI prints them without a traceback."""

from __future__ import annotations

from pathlib import Path


class MedsegError(Exception):
    """Base class of every error medseg reports to a user."""


class MedsegInputError(MedsegError):
    """An input file (image, label map, list) that cannot be used as given.

    The message names the file and the problem, e.g. ``"scan.nii.gz: file is empty (0 bytes)"``.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)

    def __reduce__(self) -> tuple[type[MedsegInputError], tuple[str | None, str]]:
        """Picklable (a worker process's error must reach its parent, e.g. through multiprocessing)."""
        return (type(self), (self.path, self.problem))


class MedsegOutputError(MedsegError):
    """An output that cannot be written (exists without --force, folder not writable, ...)."""


class MedsegConfigError(MedsegError):
    """A pipeline YAML or option that does not validate."""


class MedsegModelError(MedsegError):
    """A model package that cannot be loaded (missing medseg.json, weights that do not fit, ...)."""
