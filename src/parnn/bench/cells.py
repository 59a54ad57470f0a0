"""Resumable studies: a study is a list of cells, each measured once and appended to a
JSON-lines file as soon as it finishes, so that an interrupted study resumes where it
stopped (re-running skips finished cells).

A results directory holds ``study.json`` (the kind of study, its settings and the machine
facts) and ``cells.jsonl`` (one record per finished cell: its key, its measurements).
Re-running with different settings in the same directory is refused, naming what differs,
and nothing is overwritten.

Where the cells run is the executor's to decide: one after the other in this process
(:func:`run_here`, the default), or one Dask task each on a cluster
(:class:`parnn.bench.cluster.DaskCells`). Either way each record is appended here, in this
process, as soon as its cell finishes, and is the same record whichever ran it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from parnn.errors import CheckpointError
from parnn.progress import progress_bar
from parnn.results import (
    append_jsonl,
    machine_facts,
    read_json,
    read_jsonl,
    settings_differences,
    write_json,
)

__all__ = [
    "RENAMED_FIELDS",
    "RENAMED_SETTINGS",
    "CELLS_FILE",
    "STUDY_FILE",
    "Cell",
    "CellExecutor",
    "StudyStore",
    "cell_id",
    "measure_timed",
    "renamed_fields",
    "run_here",
]

RENAMED_SETTINGS = {"num_processes": "num_ranks", "num_stages": "num_ranks"}
"""Study settings under their old names (studies written before the rename) -> new:
``study axes``' processes and the pipeline studies' stages, both ranks. No study setting
counts model pieces (every pipeline study runs one stage per rank)."""
RENAMED_FIELDS = {
    "processes": "ranks",
    "threads_per_process": "threads",
    "peak_rss_mib_per_process": "peak_rss_mib_per_rank",
}
"""Fields of cell records under their old names (runs recorded before the rename) -> new:
the runs of ``study axes`` and of ``parnn dp --compare``."""

STUDY_FILE = "study.json"
CELLS_FILE = "cells.jsonl"


def cell_id(key: Mapping[str, Any]) -> str:
    """A stable text id of a cell key: 'batch_size=4|model=vgg16|scheme=auto'."""
    return "|".join(f"{name}={key[name]}" for name in sorted(key))


@dataclass(frozen=True, slots=True)
class Cell:
    """One point of a sweep: ``key`` names it (model, batch size, scheme...)."""

    key: Mapping[str, Any]

    @property
    def id(self) -> str:
        return cell_id(self.key)


Measure = Callable[[Cell], Mapping[str, Any]]


def measure_timed(measure: Measure, cell: Cell) -> dict[str, Any]:
    """``measure(cell)`` plus ``cell_wall_s``, the seconds it took (where it ran)."""
    started = time.perf_counter()
    measured = dict(measure(cell))
    return {**measured, "cell_wall_s": time.perf_counter() - started}


Done = Callable[[Cell, dict[str, Any]], None]


class CellExecutor(Protocol):
    """Runs cells somewhere and calls ``done(cell, measure_timed(measure, cell))`` in this
    process as soon as each finishes (in any order)."""

    def __call__(self, cells: Sequence[Cell], measure: Measure, done: Done) -> None: ...


def run_here(cells: Sequence[Cell], measure: Measure, done: Done) -> None:
    """The default executor: every cell in this process, one after the other."""
    for cell in cells:
        done(cell, measure_timed(measure, cell))


class StudyStore:
    """The results directory of one study."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def study_path(self) -> Path:
        return self.directory / STUDY_FILE

    @property
    def cells_path(self) -> Path:
        return self.directory / CELLS_FILE

    def open(self, kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Start or resume the study ``kind`` with ``settings``; returns the header.

        A directory holding another study, or the same study with other settings, is
        refused with a message that names the differences; nothing is overwritten.
        """
        settings = dict(settings)
        if self.study_path.exists():
            header = _renamed(read_json(self.study_path))
            differences = settings_differences(
                {"kind": header.get("kind"), **header.get("settings", {})},
                {"kind": kind, **settings},
            )
            if differences:
                raise CheckpointError(
                    f"{self.directory} holds a study with other settings ({'; '.join(differences)}): "
                    "resume it with the same flags, or choose another --out"
                )
            return dict(header)
        header = {
            "kind": kind,
            "settings": settings,
            "machine": machine_facts(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json(self.study_path, header)
        return header

    def clear(self) -> None:
        """Forget the study here (``study.json`` and ``cells.jsonl``): a fresh start."""
        self.cells_path.unlink(missing_ok=True)
        self.study_path.unlink(missing_ok=True)

    def header(self) -> dict[str, Any]:
        if not self.study_path.exists():
            raise CheckpointError(
                f"{self.directory} holds no study ({STUDY_FILE} is missing): "
                "give the --out directory of a `parnn study` run"
            )
        return _renamed(read_json(self.study_path))

    def records(self) -> list[dict[str, Any]]:
        """Every finished cell's record, in the order they finished."""
        return list(read_jsonl(self.cells_path))

    def add(self, cell: Cell, measured: Mapping[str, Any]) -> dict[str, Any]:
        """Append the record of a finished ``cell`` at once; return it."""
        record = {"cell": cell.id, "key": dict(cell.key), **measured}
        append_jsonl(self.cells_path, record)
        return record

    def finished_ids(self) -> set[str]:
        return {str(record["cell"]) for record in self.records() if "cell" in record}

    def run(
        self,
        cells: Sequence[Cell],
        measure: Measure,
        *,
        description: str = "cells",
        quiet: bool = False,
        executor: CellExecutor = run_here,
    ) -> list[dict[str, Any]]:
        """Measure every unfinished cell with ``executor``, appending each record as soon
        as it is done.

        Returns the records of all cells (finished earlier or now), in ``cells`` order.
        """
        done = {str(r["cell"]): r for r in self.records() if "cell" in r}
        todo = [cell for cell in cells if cell.id not in done]
        with progress_bar(len(cells), description, quiet=quiet) as bar:
            bar.advance(len(cells) - len(todo))
            if todo and len(todo) < len(cells):
                bar.set_postfix(f"resumed: {len(cells) - len(todo)} cells already done")

            def finished(cell: Cell, measured: dict[str, Any]) -> None:
                done[cell.id] = self.add(cell, measured)
                bar.advance()

            if todo:
                executor(todo, measure, finished)
        return [done[cell.id] for cell in cells if cell.id in done]


def renamed_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored cell record with its fields under today's names (:data:`RENAMED_FIELDS`)."""
    return {RENAMED_FIELDS.get(key, key): value for key, value in record.items()}


def _renamed(header: Mapping[str, Any]) -> dict[str, Any]:
    """A stored study header with its settings under today's names (RENAMED_SETTINGS)."""
    settings = header.get("settings", {})
    renamed = {RENAMED_SETTINGS.get(key, key): value for key, value in settings.items()}
    return {**header, "settings": renamed}
