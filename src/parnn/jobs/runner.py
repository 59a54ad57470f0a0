"""One session of one mode: run a set of jobs on a pool, watch it, record everything.

Each job's record is appended to ``jobs.jsonl`` as soon as it finishes (then its
checkpoint is deleted), so an interruption at any moment loses at most the steps since a
job's last checkpoint. The session's record (wall time, workers, CPU trace, whether it
was interrupted) is appended when the session ends, however it ends.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from parnn.errors import ParnnWarning
from parnn.jobs import WORKER_PRELOAD
from parnn.jobs.dask_executor import DaskPool
from parnn.jobs.fold_job import FoldContext, run_fold_job
from parnn.jobs.live import LiveView
from parnn.jobs.pool import PoolConfig, PoolEvent, WorkerPool
from parnn.jobs.spec import JobResult, JobSpec
from parnn.jobs.store import RunStore
from parnn.monitor import CpuMonitor
from parnn.results import machine_facts

__all__ = ["SessionPlan", "run_session"]


def _import_in_background(modules: Sequence[str]) -> None:
    missing = [name for name in modules if name not in sys.modules]
    if missing:
        threading.Thread(
            target=lambda: [importlib.import_module(name) for name in missing],
            name="parnn-late-imports",
            daemon=True,
        ).start()


@dataclass(kw_only=True, slots=True)
class SessionPlan:
    """How to run one mode's jobs in this session."""

    mode: str  # "parallel" or "serial"
    session: int  # the session index (0: the first run)
    num_workers: int  # pool slots (1 for serial)
    threads_per_job: int  # intra-op threads of each worker
    start_method: str = "forkserver"
    monitor_interval_s: float = 0.5  # CPU sampling period; 0: off
    quiet: bool = False
    cluster: Any = None  # None: the pinned pool; else a Dask cluster (KFoldConfig.cluster)
    late_imports: Sequence[str] = ()
    """Modules the caller needs after the run (its plots): imported on a spare core once
    fewer jobs remain than workers, so that what follows the run does not wait for them."""


def run_session(
    plan: SessionPlan,
    jobs: Sequence[JobSpec],
    context: FoldContext,
    store: RunStore,
) -> dict[str, Any]:
    """Run ``jobs`` (already ordered) and return the session record (also stored)."""
    checkpoints = store.checkpoint_dir(plan.mode)
    checkpoints.mkdir(parents=True, exist_ok=True)
    context = dataclasses.replace(context, checkpoint_dir=str(checkpoints))
    by_id = {job.job_id: job for job in jobs}
    started_at: dict[str, float] = {}
    counts = {"finished": 0, "failed": 0}
    facts = machine_facts()

    def on_event(event: PoolEvent) -> None:
        view.update(event)
        job = by_id[event.key]
        if event.kind == "started":
            started_at[event.key] = event.time
            return
        if event.kind not in ("finished", "failed"):
            return
        counts[event.kind] += 1
        if len(jobs) - counts["finished"] - counts["failed"] == plan.num_workers - 1:
            _import_in_background(plan.late_imports)  # a core has just gone idle for good
        start = started_at.get(event.key, event.time)
        numbers = dict(event.result or {})
        result = JobResult(
            job_id=job.job_id,
            model=job.model,
            scheduler=job.scheduler,
            fold=job.fold,
            mode=plan.mode,
            status="ok" if event.kind == "finished" else "failed",
            seed=job.seed,
            start_s=round(start - origin, 4),
            end_s=round(event.time - origin, 4),
            session=plan.session,
            worker=event.worker,
            threads=plan.threads_per_job,
            cost_s=job.cost_s,
            error=event.error,
            time_s=round(event.time - start, 4),
        )
        for name, value in numbers.items():
            if hasattr(result, name):
                setattr(result, name, value)
        store.append(result)
        for note in result.warnings:  # e.g. a corrupt checkpoint: said, not only recorded
            warnings.warn(
                f"{plan.mode} job {job.job_id}: {note}",  # a Dask retry, a checkpoint...
                ParnnWarning,
                stacklevel=1,
            )
        if result.ok:
            (checkpoints / f"{job.file_stem}.pt").unlink(missing_ok=True)

    pool: WorkerPool | DaskPool
    if plan.cluster is not None:
        pool = DaskPool(
            run_fold_job, context, plan.cluster, threads=plan.threads_per_job,
            preload=WORKER_PRELOAD,
        )  # fmt: skip
    else:
        pool = WorkerPool(
            run_fold_job,
            context,
            PoolConfig(
                num_workers=plan.num_workers,
                threads_per_worker=plan.threads_per_job,
                start_method=plan.start_method,
                preload=WORKER_PRELOAD,
            ),
        )
    try:
        pool.prepare()
    except BaseException:
        if isinstance(pool, DaskPool):
            pool.close()
        raise
    origin = time.perf_counter()  # the clock starts with the workers, after the fork server
    view = LiveView(jobs, title=plan.mode, quiet=plan.quiet)
    monitor = CpuMonitor(plan.monitor_interval_s)
    interrupted = True
    try:
        with monitor, view:
            pool.run([(job.job_id, job) for job in jobs], on_event)
        interrupted = False
    finally:
        wall_s = time.perf_counter() - origin
        trace = monitor.trace
        workers = plan.num_workers
        if isinstance(pool, DaskPool):
            workers = pool.num_slots
            pool.close()
        record = {
            "session": plan.session,
            "mode": plan.mode,
            "wall_s": round(wall_s, 4),
            "workers": min(workers, max(1, len(jobs))),
            "threads_per_job": plan.threads_per_job,
            "jobs_run": len(jobs),
            "jobs_finished": counts["finished"],
            "jobs_failed": counts["failed"],
            "interrupted": interrupted,
            "cpu_offset_s": round(trace.start_s - origin, 4),  # sample times are from here
            "cpu": trace.to_dict(),
            "load_average_1m_before": facts["load_average_1m"],
            "affinity": facts["affinity"],
            "time_utc": facts["time_utc"],
        }
        if isinstance(pool, DaskPool):
            record.update(pool.session_facts())
        store.append_session(record)
    return record
