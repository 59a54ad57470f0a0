"""The worker side of :class:`parnn.jobs.dask_executor.DaskPool`: one job in a Dask task.

    claim free cores of this host (one lock file per core, held while the job runs)
    -> pin the thread, set torch's threads -> "started" -> job_fn(context, payload,
    reporter) ("progress" events meanwhile) -> {"status": "finished" | "failed", ...}

Events go to the client on the run's topic (``Worker.log_event``): dicts of kind, job
key, ``time.time()``, the worker's address and host. A job's own exception is returned
as "failed", never raised, so that Dask retries only what a lost worker left unfinished.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib
import os
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
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


@contextlib.contextmanager
def _claimed_cores(count: int) -> Iterator[tuple[int, ...] | None]:
    """``count`` cores of this host that no other parnn task holds, locked (one lock file
    per core) while the task runs and released when it ends, or when its process dies;
    None when fewer are free."""
    folder = Path(tempfile.gettempdir()) / f"parnn-cores-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    cores: list[int] = []
    descriptors: list[int] = []
    try:
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
                break
        yield tuple(cores) if len(cores) == count else None
    finally:
        for descriptor in descriptors:
            os.close(descriptor)  # releases its lock


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


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_malloc_tuned = False


def _undo_malloc_trim() -> None:
    """Give glibc's malloc back the thresholds its own heuristic reaches (mmap above
    32 MiB, trim above 64 MiB), once per process.

    A Dask nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (to return freed
    memory to the system sooner). Setting it also freezes the mmap threshold at 128 KiB,
    so every activation and gradient tensor above that is mmapped and unmapped at every
    step: a LeNet-5 step then costs twice the CPU time (0.87 vs 0.47 CPU-s for 60 steps,
    measured in one process with and without the variable)."""
    global _malloc_tuned
    if _malloc_tuned or not sys.platform.startswith("linux"):
        return
    _malloc_tuned = True
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024)


def run_task(
    job_fn: JobFunction, context: Any, key: str, payload: Any, threads: int, topic: str
) -> dict[str, Any]:
    """One job in a Dask worker thread: pin, run, return what happened (never raises for
    the job's own failure, so that Dask does not retry a job that fails by itself)."""
    import distributed
    import torch

    worker = distributed.get_worker()
    _undo_malloc_trim()
    reporter = _TaskReporter(worker, topic, key, str(worker.get_current_task()))
    with _claimed_cores(threads) as cores:
        if cores is None:
            notes = [f"not pinned: fewer than {threads} free cores on {socket.gethostname()}"]
            cores = tuple(sorted(os.sched_getaffinity(os.getpid())))  # undo a former pin
        else:
            notes = []
        os.sched_setaffinity(0, cores)  # this thread; torch's intra-op threads inherit it
        torch.set_num_threads(threads)
        return _run_pinned(job_fn, context, key, payload, worker, reporter, notes)


def _run_pinned(
    job_fn: JobFunction,
    context: Any,
    key: str,
    payload: Any,
    worker: Any,
    reporter: _TaskReporter,
    notes: list[str],
) -> dict[str, Any]:
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
