"""Progress bars and console output shared by every long-running command.

Progress goes to standard error so that ``--json`` output on standard output stays one
clean JSON object. ``quiet=True`` silences the bar but not the work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["ProgressBar", "progress_bar", "stderr_console", "stdout_console"]

stderr_console = Console(stderr=True)
stdout_console = Console()


class ProgressBar:
    """One bar with ETA; ``advance`` moves it, ``set_postfix`` shows live metrics."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task

    def advance(self, amount: float = 1.0) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)

    def set_postfix(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, postfix=text)

    def set_total(self, total: float) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)


def _columns() -> tuple[object, ...]:
    return (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[postfix]}"),
    )


@contextmanager
def progress_bar(total: float, description: str, *, quiet: bool = False) -> Iterator[ProgressBar]:
    """A progress bar with elapsed time and ETA on standard error.

    >>> with progress_bar(10, "train", quiet=True) as bar:
    ...     bar.advance()
    """
    if quiet:
        yield ProgressBar(None, None)
        return
    progress = Progress(*_columns(), console=stderr_console, transient=False)  # type: ignore[arg-type]
    with progress:
        task = progress.add_task(description, total=total, postfix="")
        yield ProgressBar(progress, task)
