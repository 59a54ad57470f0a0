"""A k-fold run's directory: its settings, one record per finished job, its sessions.

    DIR/kfold.json           the settings that fix the results (written once)
    DIR/jobs.jsonl           one JobResult per finished or failed job (appended, synced)
    DIR/sessions.jsonl       one record per session and mode: wall time, workers, CPU trace
    DIR/checkpoints/MODE/    one checkpoint per unfinished job (deleted once it is recorded)

A run is resumed only with the settings it was started with; anything else is refused,
naming what differs, and nothing in the directory is touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from parnn.errors import CheckpointError
from parnn.jobs.spec import JobResult
from parnn.results import (
    append_jsonl,
    machine_facts,
    read_json,
    read_jsonl,
    settings_differences,
    write_json,
)

__all__ = [
    "CHECKPOINT_DIR",
    "JOBS_FILE",
    "RUN_FILE",
    "RUN_FORMAT",
    "SESSIONS_FILE",
    "RunStore",
    "settings_differences",
]

RUN_FORMAT = "parnn-kfold-1"
RUN_FILE = "kfold.json"
JOBS_FILE = "jobs.jsonl"
SESSIONS_FILE = "sessions.jsonl"
CHECKPOINT_DIR = "checkpoints"


class RunStore:
    """Reads and appends the files of one run directory; see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    def checkpoint_dir(self, mode: str) -> Path:
        return self.root / CHECKPOINT_DIR / mode

    def open(self, settings: Mapping[str, Any], *, resume: bool) -> int:
        """Check the directory against ``settings`` and return this session's index
        (0 for a new run). A new run writes ``kfold.json``; ``resume`` requires one with
        the same settings. Raises CheckpointError (nothing written) otherwise."""
        exists = self.run_file.exists()
        if exists and not resume:
            done = sum(1 for record in self.records() if record.ok)
            raise CheckpointError(
                f"{self.root} already holds a k-fold run ({done} jobs finished): pass --resume "
                "to continue it, or choose another --out"
            )
        if not exists and resume:
            raise CheckpointError(
                f"nothing to resume in {self.root}: no {RUN_FILE} there; check --out, or run "
                "without --resume to start"
            )
        if not exists:
            self.root.mkdir(parents=True, exist_ok=True)
            write_json(
                self.run_file,
                {"format": RUN_FORMAT, "settings": dict(settings), "machine": machine_facts()},
            )
            return 0
        try:
            saved = read_json(self.run_file)
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"{self.run_file} is unreadable ({type(error).__name__}); start a new run "
                "in another --out"
            ) from None
        if not isinstance(saved, dict) or saved.get("format") != RUN_FORMAT:
            raise CheckpointError(
                f"{self.run_file} is not a parnn k-fold run (format {RUN_FORMAT!r}); "
                "choose another --out"
            )
        differences = settings_differences(saved.get("settings", {}), settings)
        if differences:
            raise CheckpointError(
                f"cannot resume {self.root}: it was run with other settings "
                f"({'; '.join(differences)}); resume with the settings it was started with, "
                "or choose another --out"
            )
        sessions = [int(record.get("session", 0)) for record in self.sessions()]
        sessions += [record.session for record in self.records()]
        return max(sessions, default=-1) + 1

    def settings(self) -> dict[str, Any]:
        payload = read_json(self.run_file)
        return dict(payload.get("settings", {}))

    def append(self, result: JobResult) -> None:
        append_jsonl(self.root / JOBS_FILE, result.to_dict())

    def records(self) -> list[JobResult]:
        """The latest record of each (mode, job), in the order they were first written."""
        latest: dict[tuple[str, str], JobResult] = {}
        for payload in read_jsonl(self.root / JOBS_FILE):
            try:
                result = JobResult.from_dict(payload)
            except TypeError:
                continue  # a record of another layout: ignore it
            latest[(result.mode, result.job_id)] = result
        return list(latest.values())

    def finished(self, mode: str) -> dict[str, JobResult]:
        """Jobs of ``mode`` that finished (status ok), by job id."""
        return {r.job_id: r for r in self.records() if r.mode == mode and r.ok}

    def append_session(self, record: Mapping[str, Any]) -> None:
        append_jsonl(self.root / SESSIONS_FILE, record)

    def sessions(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.root / SESSIONS_FILE))
