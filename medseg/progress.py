"""Progress bars (rich) on stderr, so stdout stays clean for summaries."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

#: One console for status lines and progress bars.
console = Console(stderr=True, highlight=False)


def make_progress(enabled: bool = True) -> Progress:
    """A rich ``Progress`` with count, elapsed and remaining time (disabled: renders nothing)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=not enabled,
        transient=False,
    )
