"""The exceptions parnn raises for its users.

Every user-facing error is a :class:`ParnnError` (a ``ValueError``) whose message names
the bad value, the rule it broke, the valid choices and the fix, on one line. The CLI
prints that line and exits with :attr:`ParnnError.exit_code`; there is no traceback.
``assert`` is kept for internal invariants.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TextIO

__all__ = [
    "ParnnError",
    "ConfigError",
    "ModelError",
    "DataError",
    "PartitionError",
    "ScheduleError",
    "CheckpointError",
    "RankFailedError",
    "ParnnWarning",
    "Terminated",
    "show_warning_line",
]


class ParnnError(ValueError):
    """Base class of every error parnn reports to its user."""

    exit_code: int = 2


class ConfigError(ParnnError):
    """A setting out of range or a combination of settings that cannot work."""


class ModelError(ParnnError):
    """An unknown model name, a user model that is not sequential, a bad input shape."""


class DataError(ParnnError):
    """An unknown dataset, a missing directory or file, a corrupt or truncated file."""


class PartitionError(ParnnError):
    """Stage boundaries that are empty, not increasing or out of range; unknown methods."""


class ScheduleError(ParnnError):
    """An unknown pipeline schedule or one that cannot run with the given settings."""


class CheckpointError(ParnnError):
    """A checkpoint or results directory that is missing, corrupt or from another run."""


class RankFailedError(ParnnError):
    """A worker process (a rank) raised or died; the whole job was stopped.

    ``rank`` is the failing rank (``None`` when unknown) and ``detail`` its error text;
    ``traceback`` is the worker's formatted traceback (empty when it died without one), for
    logs, never for the one-line message.
    """

    exit_code = 1

    def __init__(self, rank: int | None, detail: str, *, traceback: str = "") -> None:
        self.rank = rank
        self.detail = detail
        self.traceback = traceback
        where = f"rank {rank}" if rank is not None else "a worker"
        super().__init__(f"{where} failed: {detail}")

    def __reduce__(self) -> tuple[object, ...]:
        # Picklable (a task-parallel job may hand it to another process).
        return (type(self), (self.rank, self.detail), {"traceback": self.traceback})


class ParnnWarning(UserWarning):
    """A setting that works but probably not as the user hopes (oversubscribed cores,
    an ignored option)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised in the main thread like Ctrl-C's KeyboardInterrupt, so that
    every ``finally`` and launcher stops its processes the same way; the CLI then prints
    ``parnn: terminated`` and exits 143 (128 + SIGTERM)."""


def show_warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A ``warnings.showwarning`` that prints one ``parnn: warning: ...`` line (not Python's
    two lines with a source path). The CLI installs it while a command runs, and every
    process parnn starts (ranks, pool workers) installs it for good."""
    text = " ".join(str(message).split())
    stream = file if file is not None else sys.stderr
    with contextlib.suppress(OSError, ValueError, AttributeError):  # nowhere to warn
        stream.write(f"parnn: warning: {text}\n")
        stream.flush()
