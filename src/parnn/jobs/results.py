"""The results of a k-fold run, rendered from its directory's records alone.

:class:`KFoldResults` holds every job's record and every session's record; from them it
derives the accuracy table (mean ± std over folds per model x scheduler, parallel and
serial), the timing table (wall time, speedup, CPU utilisation), and writes JSON, CSV
and plots. Nothing here re-runs anything.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parnn.jobs.spec import MODES, JobResult
from parnn.jobs.store import JOBS_FILE, RunStore
from parnn.results import atomic_write_text, write_json

__all__ = ["CSV_COLUMNS", "KFoldResults"]

CSV_COLUMNS = (
    "mode",
    "model",
    "scheduler",
    "fold",
    "status",
    "accuracy",
    "loss",
    "train_loss",
    "steps",
    "samples",
    "num_train",
    "num_val",
    "time_s",
    "start_s",
    "end_s",
    "session",
    "worker",
    "threads",
    "resumed_from_step",
    "cost_s",
    "seed",
    "error",
)


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1; 0 for one value); None when empty."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def _cpu_stats(sessions: Sequence[dict[str, Any]], jobs: Sequence[JobResult]) -> dict[str, Any]:
    """CPU utilisation of the usable cores over the sessions, and while the pool was full
    (every worker busy: the jobs that remained kept all of them running)."""
    all_samples: list[float] = []
    full_samples: list[float] = []
    process_samples: list[float] = []
    for session in sessions:
        cpu = session.get("cpu") or {}
        cores = session.get("affinity") or list(range(len(cpu.get("per_core", [[]])[0] or [])))
        times = cpu.get("times_s", [])
        per_core = cpu.get("per_core", [])
        total_cores = len(per_core[0]) if per_core else 0
        interval = float(cpu.get("interval_s", 0.5))
        offset = float(session.get("cpu_offset_s", 0.0))
        mine = [j for j in jobs if j.session == session.get("session")]
        workers = int(session.get("workers", 1))
        for index, (time_s, row) in enumerate(zip(times, per_core, strict=False)):
            usable = [row[core] for core in cores if core < len(row)] or row
            value = sum(usable) / max(1, len(usable))
            all_samples.append(value)
            process = cpu.get("process", [])
            if index < len(process) and usable:
                # percent of the whole machine -> percent of the usable cores
                process_samples.append(process[index] * total_cores / len(usable))
            middle = offset + time_s - interval / 2
            running = sum(1 for j in mine if j.start_s <= middle < j.end_s)
            if running >= workers:
                full_samples.append(value)

    def mean(values: list[float]) -> float | None:
        return round(statistics.fmean(values), 1) if values else None

    return {
        "cpu_mean_percent": mean(all_samples),
        "cpu_full_percent": mean(full_samples),
        "cpu_process_percent": mean(process_samples),
        "cpu_samples": len(all_samples),
    }


@dataclass(slots=True)
class KFoldResults:
    """Every job of a run (latest record per mode and job) and every session."""

    settings: dict[str, Any]
    jobs: list[JobResult]
    sessions: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None
    cost: dict[str, Any] = field(default_factory=dict)  # method and per-model step cost
    machine: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # what save() wrote, by kind

    @classmethod
    def load(cls, root: str | Path, **extra: Any) -> KFoldResults:
        """Read the results of the run in ``root`` (see :mod:`parnn.jobs.store`)."""
        store = RunStore(root)
        return cls(
            settings=store.settings(),
            jobs=store.records(),
            sessions=store.sessions(),
            out_dir=Path(root),
            **extra,
        )

    # -- selections ---------------------------------------------------------------------

    @property
    def models(self) -> list[str]:
        return list(self.settings.get("models", sorted({j.model for j in self.jobs})))

    @property
    def schedulers(self) -> list[str]:
        return list(self.settings.get("schedulers", sorted({j.scheduler for j in self.jobs})))

    @property
    def modes(self) -> list[str]:
        return [mode for mode in MODES if any(j.mode == mode for j in self.jobs)]

    def jobs_of(self, mode: str) -> list[JobResult]:
        """The jobs of ``mode`` in model x scheduler x fold order."""
        models, schedulers = self.models, self.schedulers

        def key(job: JobResult) -> tuple[int, int, int]:
            return (
                models.index(job.model) if job.model in models else len(models),
                schedulers.index(job.scheduler) if job.scheduler in schedulers else 0,
                job.fold,
            )

        return sorted((j for j in self.jobs if j.mode == mode), key=key)

    @property
    def failed(self) -> list[JobResult]:
        return [job for job in self.jobs if not job.ok]

    def sessions_of(self, mode: str) -> list[dict[str, Any]]:
        return [s for s in self.sessions if s.get("mode") == mode]

    # -- tables -------------------------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        """Per model x scheduler: accuracy mean ± std over folds for each mode, and whether
        parallel and serial agree on every fold (None without both)."""
        folds = int(self.settings.get("folds", 0))
        rows = []
        for model in self.models:
            for scheduler in self.schedulers:
                row: dict[str, Any] = {"model": model, "scheduler": scheduler}
                per_mode: dict[str, dict[int, JobResult]] = {}
                for mode in MODES:
                    jobs = {
                        j.fold: j
                        for j in self.jobs_of(mode)
                        if j.model == model and j.scheduler == scheduler
                    }
                    per_mode[mode] = jobs
                    row[mode] = self._cell(jobs, folds) if jobs else None
                parallel, serial = per_mode["parallel"], per_mode["serial"]
                if parallel and serial:
                    row["identical"] = all(
                        fold in parallel
                        and fold in serial
                        and parallel[fold].ok
                        and serial[fold].ok
                        and parallel[fold].accuracy == serial[fold].accuracy
                        and parallel[fold].loss == serial[fold].loss
                        for fold in range(folds)
                    )
                else:
                    row["identical"] = None
                rows.append(row)
        return rows

    @staticmethod
    def _cell(jobs: dict[int, JobResult], folds: int) -> dict[str, Any]:
        ok = [jobs[f] for f in sorted(jobs) if jobs[f].ok]
        accuracy_mean, accuracy_std = _mean_std([j.accuracy for j in ok if j.accuracy is not None])
        loss_mean, _ = _mean_std([j.loss for j in ok if j.loss is not None])
        return {
            "mean_accuracy": accuracy_mean,
            "std_accuracy": accuracy_std,
            "mean_loss": loss_mean,
            "folds_ok": len(ok),
            "folds_failed": sum(1 for j in jobs.values() if not j.ok),
            "folds_missing": folds - len(jobs),
            "accuracies": [
                jobs[f].accuracy if f in jobs and jobs[f].ok else None for f in range(folds)
            ],
        }

    def timing(self) -> dict[str, Any]:
        """Per mode: wall time (summed over sessions), summed job time, CPU utilisation;
        and ``speedup`` = serial wall time / parallel wall time (None without both)."""
        out: dict[str, Any] = {}
        for mode in MODES:
            sessions = self.sessions_of(mode)
            jobs = self.jobs_of(mode)
            if not sessions and not jobs:
                out[mode] = None
                continue
            out[mode] = {
                "wall_s": round(sum(float(s["wall_s"]) for s in sessions), 3),
                "job_time_s": round(sum(j.time_s for j in jobs if j.ok), 3),
                "jobs_ok": sum(1 for j in jobs if j.ok),
                "jobs_failed": sum(1 for j in jobs if not j.ok),
                "workers": max((int(s["workers"]) for s in sessions), default=0),
                "threads_per_job": max((int(s["threads_per_job"]) for s in sessions), default=0),
                "sessions": len(sessions),
                "load_average_1m_before": (
                    sessions[0].get("load_average_1m_before") if sessions else None
                ),
                **_cpu_stats(sessions, jobs),
            }
        parallel, serial = out.get("parallel"), out.get("serial")
        speedup = None
        if parallel and serial and parallel["wall_s"] > 0:
            speedup = round(serial["wall_s"] / parallel["wall_s"], 3)
        out["speedup"] = speedup
        return out

    def per_model(self) -> list[dict[str, Any]]:
        """Per model: summed job seconds in each mode, and the slowdown of a job when it
        shares the machine with the others (parallel job time / serial job time)."""
        rows = []
        for model in self.models:
            row: dict[str, Any] = {"model": model}
            for mode in MODES:
                jobs = [j for j in self.jobs_of(mode) if j.model == model and j.ok]
                row[f"{mode}_jobs"] = len(jobs)
                row[f"{mode}_job_time_s"] = round(sum(j.time_s for j in jobs), 3) if jobs else None
            parallel, serial = row["parallel_job_time_s"], row["serial_job_time_s"]
            row["slowdown"] = round(parallel / serial, 3) if parallel and serial else None
            rows.append(row)
        return rows

    def table(self) -> str:
        """The accuracy table as Markdown: mean ± std over folds."""
        modes = self.modes or ["parallel"]
        header = ["model", "scheduler", *[f"{mode} accuracy" for mode in modes]]
        if len(modes) == 2:
            header.append("identical")
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for row in self.summary():
            cells = [row["model"], row["scheduler"]]
            for mode in modes:
                cells.append(format_cell(row[mode]))
            if len(modes) == 2:
                cells.append({True: "yes", False: "no", None: "-"}[row["identical"]])
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    # -- files --------------------------------------------------------------------------

    def to_dict(self, *, include_history: bool = False) -> dict[str, Any]:
        """The stable JSON object (its keys are listed in docs/kfold.md)."""
        jobs = []
        for mode in MODES:
            for job in self.jobs_of(mode):
                record = job.to_dict()
                if not include_history:
                    record.pop("loss_history", None)
                jobs.append(record)
        return {
            "settings": self.settings,
            "summary": self.summary(),
            "timing": self.timing(),
            "per_model": self.per_model(),
            "jobs_total": len(self.jobs),
            "jobs_ok": sum(1 for j in self.jobs if j.ok),
            "jobs_failed": len(self.failed),
            "failed": [{"job_id": j.job_id, "mode": j.mode, "error": j.error} for j in self.failed],
            "cost": self.cost,
            "jobs": jobs,
            "machine": self.machine,
        }

    def to_csv(self) -> str:
        """One row per job (both modes)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for mode in MODES:
            for job in self.jobs_of(mode):
                record = job.to_dict()
                writer.writerow(["" if record[c] is None else record[c] for c in CSV_COLUMNS])
        return buffer.getvalue()

    def save(self, directory: str | Path | None = None) -> dict[str, str]:
        """Write results.json and results.csv into ``directory`` (default: the run's
        directory); return their paths by kind. The plots are drawn above the engine:
        :func:`parnn.bench.kfold_plots.save_kfold_plots` (``parnn kfold`` and
        ``parnn report DIR`` call it)."""
        target = Path(directory) if directory is not None else self.out_dir
        if target is None:
            raise ValueError("no directory to save to: pass one")
        files = {
            "results_json": target / "results.json",
            "results_csv": target / "results.csv",
            "jobs_jsonl": target / JOBS_FILE,
        }
        write_json(files["results_json"], self.to_dict(include_history=True))
        atomic_write_text(files["results_csv"], self.to_csv())
        self.files = {kind: str(path) for kind, path in files.items()}
        return dict(self.files)


def format_cell(cell: dict[str, Any] | None) -> str:
    """'97.21 ± 0.84 %' (+ ', 1 failed' / ', 2 missing'), or '-'."""
    if cell is None or cell["mean_accuracy"] is None:
        text = "-"
    else:
        text = f"{100 * cell['mean_accuracy']:.2f} ± {100 * cell['std_accuracy']:.2f} %"
    notes = []
    if cell is not None and cell["folds_failed"]:
        notes.append(f"{cell['folds_failed']} failed")
    if cell is not None and cell["folds_missing"]:
        notes.append(f"{cell['folds_missing']} missing")
    return f"{text} ({', '.join(notes)})" if notes else text
