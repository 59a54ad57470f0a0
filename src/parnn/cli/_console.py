"""How the command line talks on standard error: one line per error, warning or signal.

- click's own usage errors (an unknown flag, a missing value, a bad choice, an unknown
  command) become one ``parnn: error: ...`` line naming the command and the valid choices;
- warnings become one ``parnn: warning: ...`` line (not Python's two lines with a path);
- SIGTERM is raised as :class:`~parnn.errors.Terminated` (a KeyboardInterrupt), so that it
  stops every process exactly as Ctrl-C does; the group prints ``parnn: terminated``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

from parnn.errors import Terminated, show_warning_line

__all__ = ["Terminated", "one_line_warnings", "sigterm_as_interrupt", "usage_error_line"]


def usage_error_line(error: click.UsageError) -> str:
    """``parnn: error: <command>: <click's message>; <the valid choices or where to look>``."""
    message = " ".join(error.format_message().split()).rstrip(".")
    ctx = error.ctx
    where = ctx.command_path if ctx is not None else "parnn"
    hint = f"see '{where} --help'"
    if ctx is not None and isinstance(ctx.command, click.Group) and "command" in message:
        names = ctx.command.list_commands(ctx)
        if names:
            hint = f"choose one of {', '.join(names)}"
    command = where.partition(" ")[2]  # the subcommand's path, without the program name
    return f"parnn: error: {command + ': ' if command else ''}{message}; {hint}"


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Warnings raised while a command runs print as one ``parnn: warning:`` line."""
    saved = warnings.showwarning
    warnings.showwarning = show_warning_line
    try:
        yield
    finally:
        warnings.showwarning = saved


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends at once
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread while a command runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved: Any = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved)
