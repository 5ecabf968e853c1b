"""Progress on stderr (rich), so stdout stays clean for summaries.

Every step that can take more than two seconds goes through these helpers:

- :func:`make_progress`: bars with counts and times (training epochs, windows of a prediction);
- :func:`step`: a spinner saying what is being done (phantom generation, model loading, ...);
- :func:`activity`: a spinner whose text follows the phases of one job (read, network, restore, write);
- :func:`plain`: a line only for logs, where a bar would otherwise have shown it (one line per epoch).

On a terminal they draw bars and spinners; when stderr is not a terminal (a log file, Docker, a pipe) they
print one plain line per step instead and no bars; after :func:`set_quiet` (``--quiet``) they print nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

#: One console for status lines and progress bars.
console = Console(stderr=True, highlight=False)

_state: dict[str, Any] = {"quiet": False, "live": None}


def set_quiet(quiet: bool = True) -> None:
    """``--quiet``: no bars, spinners or progress lines from here on (errors and warnings still print)."""
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return bool(_state["quiet"])


def interactive() -> bool:
    """Whether bars and spinners are drawn (stderr is a terminal); otherwise plain lines are printed."""
    return console.is_terminal


class _Count(ProgressColumn):
    """``k/N`` for a task with a total, nothing for a spinner."""

    def render(self, task: Task) -> Text:
        return Text("" if task.total is None else f"{int(task.completed)}/{int(task.total)}", style="progress.download")


class _LiveProgress(Progress):
    """A ``Progress`` that registers itself while open, so :func:`step` adds its spinner to it (rich allows
    one live display at a time)."""

    def __enter__(self) -> _LiveProgress:
        super().__enter__()
        if not self.disable and _state["live"] is None:
            _state["live"] = self
        return self

    def __exit__(self, *exc: Any) -> None:
        if _state["live"] is self:
            _state["live"] = None
        super().__exit__(*exc)


def make_progress(enabled: bool = True) -> Progress:
    """Bars with count, elapsed and remaining time; they render only on a terminal and when not quiet
    (elsewhere the callers print :func:`plain` lines)."""
    return _LiveProgress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        _Count(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=not enabled or is_quiet() or not interactive(),
        transient=False,
    )


def plain(message: str, enabled: bool = True) -> None:
    """One line for logs (stderr not a terminal), where a bar shows the same on a terminal; nothing when quiet."""
    if enabled and not is_quiet() and not interactive():
        console.print(message, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def activity(description: str, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner saying ``description``; the yielded function replaces the text (the next phase).

    Not a terminal: one plain line per text. Quiet or not ``enabled``: nothing.
    """
    if not enabled or is_quiet():
        yield lambda text: None
        return
    if not interactive():
        console.print(description, markup=False, highlight=False, soft_wrap=True)
        yield lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    live: Progress | None = _state["live"]
    with ExitStack() as stack:
        bar = live if live is not None else stack.enter_context(make_progress())
        task = bar.add_task(description, total=None, status="")
        try:
            yield lambda text: bar.update(task, description=text)
        finally:
            bar.remove_task(task)


@contextmanager
def step(description: str, enabled: bool = True) -> Iterator[None]:
    """A spinner saying what is being done (one plain line when stderr is not a terminal)."""
    with activity(description, enabled):
        yield


__all__ = ["activity", "console", "interactive", "is_quiet", "make_progress", "plain", "set_quiet", "step"]
