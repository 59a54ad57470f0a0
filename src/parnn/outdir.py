"""``--out``: checked before any work starts, and one overwrite policy for every command.

:func:`check_out_dir` is called by every command that writes results, before it starts a
process or trains a step, so that a bad path can never lose a finished run:

- the path must be a directory this process can create and write (it is created, and a
  probe file is written and deleted); an existing regular file, or a directory that
  cannot be created or written, is a one-line :class:`~parnn.errors.ConfigError`;
- a directory that already holds files from an earlier run is refused, with what is there
  and how to go on: ``--resume`` to continue it (commands that resume), ``--overwrite``
  to write the new run over it, or another ``--out``. Studies resume by re-running into
  the same directory (their results store skips finished cells): they accept it as is.

``--overwrite`` lets the new run write over files of the same names; it deletes nothing
else (``parnn train`` also removes its earlier checkpoints, so that ``--resume`` can never
mix two runs).
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

from parnn.errors import ConfigError

__all__ = ["Resumes", "check_out_dir"]

_LISTED = 3  # entries named in the refusal


class Resumes(Enum):
    """How a command continues an earlier run in its ``--out``."""

    NEVER = "never"
    """It cannot: a non-empty directory needs ``--overwrite``."""
    FLAG = "flag"
    """With ``--resume``: a non-empty directory needs ``--resume`` or ``--overwrite``."""
    RERUN = "rerun"
    """By running again into the same directory (studies): accepted as is."""


def _launcher_rank() -> int:
    """This process's rank when an external launcher (torchrun, mpirun) started it, else 0."""
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _kind(path: Path) -> str:
    if path.is_symlink():
        return "symbolic link"
    return "regular file" if path.is_file() else "special file"


def _probe(path: Path, flag: str, shown: str) -> None:
    probe = path / f".parnn-write-probe-{os.getpid()}"
    try:
        descriptor = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(descriptor, b"parnn")
        finally:
            os.close(descriptor)
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"{flag} {shown}: cannot write in that directory ({error.strerror or error}); "
            "choose a directory you can write to"
        ) from None


def _remove_empty(created: list[Path]) -> None:
    """Remove the directories in ``created`` (outermost first in the list), deepest first."""
    for directory in reversed(created):
        try:
            directory.rmdir()
        except OSError:
            break


def check_out_dir(
    out: str | os.PathLike[str],
    *,
    resumes: Resumes = Resumes.NEVER,
    resume: bool = False,
    overwrite: bool = False,
    can_overwrite: bool = True,
    create: bool = True,
    what: str = "an earlier run",
    flag: str = "--out",
) -> Path:
    """Create ``out`` if missing, prove it writable, apply the overwrite policy; return it.

    ``resumes`` says how the calling command continues a run, ``resume`` and ``overwrite``
    are the user's flags, ``flag`` names the option in messages. Raises
    :class:`~parnn.errors.ConfigError` (one line) when the path is unusable or holds an
    earlier run that neither flag allows to reuse; directories it created for a path then
    refused are removed again. ``can_overwrite=False``: the command has no ``--overwrite``;
    ``create=False``: the directory is only checked (what was created for the check is
    removed), for a command that validates more before it writes; ``what`` names an
    earlier run in the refusal.
    """
    shown = os.fspath(out)
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"{flag} {shown}: is an existing {_kind(path)}, not a directory; give a directory "
            "path (it is created when missing)"
        )
    created = []
    for parent in reversed([path, *path.parents]):
        if not parent.exists():
            created.append(parent)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"{flag} {shown}: cannot create that directory ({error.strerror or error}); "
            "choose a path you can write to"
        ) from None
    try:
        _probe(path, flag, shown)
    except ConfigError:  # a refused path leaves no trace
        _remove_empty(created)
        raise
    if not create:  # the command creates it when it starts writing
        _remove_empty(created)
    # Another process's probe (two launcher agents checking one --out) is not a run.
    entries = (
        sorted(e.name for e in path.iterdir() if not e.name.startswith(".parnn-write-probe-"))
        if path.is_dir()
        else []
    )
    if _launcher_rank() != 0:  # under torchrun/mpirun rank 0 owns the results and decides
        return path
    if not entries or overwrite or resumes is Resumes.RERUN:
        return path
    if resume and resumes is Resumes.FLAG:
        return path
    listing = ", ".join(entries[:_LISTED])
    if len(entries) > _LISTED:
        listing += f", ... ({len(entries)} entries)"
    ways = ["rerun with --resume to continue it"] if resumes is Resumes.FLAG else []
    ways += ["add --overwrite to replace it"] if can_overwrite else []
    how = ", ".join(ways) if ways else "delete it"
    raise ConfigError(
        f"{flag} {shown} already holds {what} ({listing}); {how}, or choose another {flag}"
    )
