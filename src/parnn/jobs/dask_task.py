"""The worker side of :class:`parnn.jobs.dask_executor.DaskPool`: one job in a Dask task.

    claim free cores of this host (one lock file per core, held while the worker thread
    lives) -> pin the thread, set torch's threads -> "started" -> job_fn(context, payload,
    reporter) ("progress" events meanwhile) -> {"status": "finished" | "failed", ...}

Events go to the client on the run's topic (``Worker.log_event``): dicts of kind, job
key, ``time.time()``, the worker's address and host. A job's own exception is returned
as "failed", never raised, so that Dask retries only what a lost worker left unfinished.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parnn.jobs.worker import JobFunction, JobReporter, one_line

__all__ = ["monitor_since", "preload", "run_task"]

_CANCELLED_STATES = ("cancelled", "released", "forgotten")


def preload(modules: Sequence[str]) -> None:
    for name in modules:
        importlib.import_module(name)


# ---------------------------------------------------------------------------- worker side


class _Cancelled(Exception):
    """The client cancelled this task (Ctrl-C): stop the job."""


_CLAIMS: dict[int, tuple[tuple[int, ...], list[int]]] = {}  # thread -> (cores, lock fds)
_CLAIMS_LOCK = threading.Lock()


def _claim_cores(count: int) -> tuple[int, ...] | None:
    """``count`` cores of this host no other parnn task holds, locked for the life of the
    calling thread (a worker thread runs one task at a time); None when too few are free."""
    ident = threading.get_ident()
    with _CLAIMS_LOCK:
        held = _CLAIMS.get(ident)
        if held is not None and len(held[0]) == count:
            return held[0]
        if held is not None:
            for descriptor in held[1]:
                os.close(descriptor)  # releases its lock
            del _CLAIMS[ident]
        folder = Path(tempfile.gettempdir()) / f"parnn-cores-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        cores: list[int] = []
        descriptors: list[int] = []
        for core in sorted(os.sched_getaffinity(os.getpid())):  # the process's, not a thread's
            descriptor = os.open(folder / f"cpu{core}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            cores.append(core)
            descriptors.append(descriptor)
            if len(cores) == count:
                _CLAIMS[ident] = (tuple(cores), descriptors)
                return tuple(cores)
        for descriptor in descriptors:
            os.close(descriptor)
        return None


class _TaskReporter(JobReporter):
    """A job's progress, as events on the run's topic; stops the job once cancelled."""

    def __init__(self, worker: Any, topic: str, key: str, task_key: str) -> None:
        self.key = key
        self._worker = worker
        self._topic = topic
        self._task_key = task_key

    def send(self, kind: str, **fields: Any) -> None:
        message = {
            "kind": kind,
            "key": self.key,
            "time": time.time(),
            "worker": self._worker.address,
            "host": socket.gethostname(),
            **fields,
        }
        self._worker.log_event(self._topic, message)

    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        task = self._worker.state.tasks.get(self._task_key)
        if task is None or task.state in _CANCELLED_STATES:
            raise _Cancelled(self.key)
        self.send("progress", step=step, total=total, loss=loss)


def run_task(
    job_fn: JobFunction, context: Any, key: str, payload: Any, threads: int, topic: str
) -> dict[str, Any]:
    """One job in a Dask worker thread: pin, run, return what happened (never raises for
    the job's own failure, so that Dask does not retry a job that fails by itself)."""
    import distributed
    import torch

    worker = distributed.get_worker()
    reporter = _TaskReporter(worker, topic, key, str(worker.get_current_task()))
    notes: list[str] = []
    cores = _claim_cores(threads)
    if cores is None:
        notes.append(f"not pinned: fewer than {threads} free cores on {socket.gethostname()}")
    else:
        os.sched_setaffinity(0, cores)  # this thread; torch's intra-op threads inherit it
    torch.set_num_threads(threads)
    if worker.state.nthreads > 1:
        notes.append(
            f"worker {worker.address} runs {worker.state.nthreads} threads: its jobs share "
            "torch's global RNG and threads; start workers with --nthreads 1"
        )
    started = time.time()
    reporter.send("started")
    base = {"started": started, "worker": worker.address, "host": socket.gethostname()}
    try:
        result = job_fn(context, payload, reporter)
    except _Cancelled:
        raise
    except Exception as error:  # noqa: BLE001 - a job's failure is data (MemoryError too)
        return {
            **base,
            "status": "failed",
            "time": time.time(),
            "error": one_line(error),
            "detail": traceback.format_exc(),
        }
    if notes:
        result = {**result, "warnings": [*result.get("warnings", []), *notes]}
    return {**base, "status": "finished", "time": time.time(), "result": result}


def monitor_since(since: float, dask_worker: Any) -> dict[str, Any]:
    """The worker's own CPU samples (Dask's system monitor: percent of one core, every
    0.5 s) since ``since`` (wall clock)."""
    quantities = dask_worker.monitor.quantities
    samples = [
        (stamp, cpu)
        for stamp, cpu in zip(quantities["time"], quantities["cpu"], strict=False)
        if stamp >= since
    ]
    return {
        "host": socket.gethostname(),
        "cores": len(os.sched_getaffinity(os.getpid())),
        "times": [stamp for stamp, _ in samples],
        "cpu": [cpu for _, cpu in samples],
    }
