"""A pool of pinned worker processes that pull independent jobs.

Unlike an SPMD launch (:mod:`parnn.launch`: every rank runs the same program and one
failure ends them all), a job pool keeps going when a job fails: the job is recorded as
failed and its worker takes the next one. Each worker is a fresh process (forked from
multiprocessing's fork server, or spawned) pinned to its own core(s) with a fixed number
of intra-op threads; it receives the shared *context* (dataset, factories) once, when it
starts, and then one small job payload at a time.

    parent                                    worker (one per slot)
    ───────────────────────────────────       ──────────────────────────────────
    start N workers ───────────────────────>  pin, set threads, "ready"
    idle worker? send the next job ────────>  "started", then "progress"...
    wait on pipes and process sentinels  <──  "finished" result | "failed" error
    a sentinel fires while busy: the job is failed ("worker died"), a new worker starts

The parent owns the order: it hands the next job to the first idle worker, so the order
of ``jobs`` given to :meth:`WorkerPool.run` is the order in which they start. Each worker
talks over its own pipe, so one killed mid-message (out of memory, ``kill -9``) damages
only its own channel.

Ctrl-C reaches the whole process group: workers ignore it, the parent terminates them and
re-raises. Workers die with the parent (``PR_SET_PDEATHSIG`` and a pipe hang-up watcher),
so even ``kill -9`` of the parent leaves no orphan.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from parnn.errors import ConfigError, RankFailedError
from parnn.jobs.worker import JobFunction, JobReporter, do_nothing, one_line, send, worker_main
from parnn.launch import plan_cores, usable_cores
from parnn.launch.placement import warn_if_oversubscribed

__all__ = [
    "START_METHODS",
    "JobFunction",
    "JobReporter",
    "PoolConfig",
    "PoolEvent",
    "WorkerPool",
]

START_METHODS = ("forkserver", "spawn")  # never "fork": the parent may run threads
_STARTUP_FAILURES_ALLOWED = 3  # workers dying before they are ready, before giving up


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """Something a job did; ``time`` is :func:`time.perf_counter` (one clock per machine)."""

    kind: str  # "started" | "progress" | "finished" | "failed"
    key: str  # the job's key
    worker: int  # pool slot
    time: float
    step: int = 0
    total: int = 0
    loss: float | None = None
    result: dict[str, Any] | None = None  # "finished": what the job function returned
    error: str | None = None  # "failed": "ExcType: message", one line
    detail: str | None = None  # "failed": the traceback, when there is one
    host: str | None = None  # the worker's host, when the jobs run on a cluster


@dataclass(kw_only=True, slots=True)
class PoolConfig:
    """How many workers, where they run and how they start."""

    num_workers: int
    """Worker processes (pool slots)."""
    threads_per_worker: int = 1
    """torch intra-op threads in each worker."""
    pin: bool = True
    """Pin each worker to its own core(s) (os.sched_setaffinity), round-robin."""
    cores: tuple[int, ...] | None = None
    """Cores to pin to; None: every core this process may use."""
    start_method: str = "forkserver"
    """'forkserver' (workers forked from a fresh server with torch loaded: fast) or 'spawn'."""
    preload: tuple[str, ...] = ()
    """Modules the fork server imports once, so that its workers start with them loaded."""

    def __post_init__(self) -> None:
        for name in ("num_workers", "threads_per_worker"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be an integer >= 1; e.g. {name}=1")
        if self.cores is not None:
            self.cores = tuple(self.cores)
            usable = usable_cores()
            if not self.cores or any(core not in usable for core in self.cores):
                raise ConfigError(
                    f"cores={self.cores}: must be CPU ids this process may use "
                    f"(usable: {', '.join(map(str, usable))})"
                )
        if self.start_method not in START_METHODS:
            raise ConfigError(
                f"start_method={self.start_method!r}: choose one of {', '.join(START_METHODS)}"
            )


@dataclass(slots=True)
class _Worker:
    slot: int
    process: BaseProcess
    conn: Connection
    ready: bool = False
    current: str | None = None  # key of the job it runs


class WorkerPool:
    """Runs jobs on ``config.num_workers`` pinned processes; see the module docstring.

    ``job_fn(context, payload, reporter)`` must be a picklable top-level function; it runs
    in a worker and returns a picklable dict, or raises (the job is recorded as failed).
    """

    def __init__(self, job_fn: JobFunction, context: Any, config: PoolConfig) -> None:
        self.job_fn = job_fn
        self.context = context
        self.config = config
        self._cores = config.cores if config.cores is not None else usable_cores()
        self._context: Any = multiprocessing.get_context(config.start_method)
        if config.start_method == "forkserver" and config.preload:
            self._context.set_forkserver_preload(list(config.preload))
        self._workers: dict[int, _Worker] = {}
        self._startup_failures = 0

    def prepare(self) -> None:
        """Start the fork server now (it imports ``preload`` once, seconds), so that a
        timed :meth:`run` measures the workers' start, not the server's."""
        if self.config.start_method == "forkserver":
            # The server answers its first request once its imports are done: a process
            # that does nothing, started and joined, waits for exactly that.
            probe = self._context.Process(target=do_nothing, name="parnn-pool-probe")
            probe.start()
            probe.join()

    def _start_worker(self, slot: int) -> _Worker:
        threads = self.config.threads_per_worker
        cores = plan_cores(slot + 1, threads, self._cores)[slot] if self.config.pin else None
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main,
            args=(child_conn, cores, threads, self.job_fn, self.context),
            name=f"parnn-job-worker-{slot}",
            daemon=True,
        )
        try:
            process.start()  # pickles the context (tensors travel through shared memory)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise ConfigError(
                f"the jobs' shared settings cannot be sent to the worker processes "
                f"({one_line(error)}): use top-level functions and classes, not lambdas or "
                "local functions"
            ) from error
        finally:
            child_conn.close()  # the child holds the only other end: its death reads as EOF
        worker = _Worker(slot=slot, process=process, conn=parent_conn)
        self._workers[slot] = worker
        return worker

    def run(self, jobs: Sequence[tuple[str, Any]], on_event: Callable[[PoolEvent], None]) -> None:
        """Run ``jobs`` ((key, payload) pairs, started in this order) and call ``on_event``
        for each event; returns when every job has finished or failed."""
        if not jobs:
            return
        num_workers = min(self.config.num_workers, len(jobs))
        warn_if_oversubscribed(num_workers, self.config.threads_per_worker, len(self._cores))
        pending: deque[tuple[str, Any]] = deque(jobs)
        try:
            for slot in range(num_workers):
                self._start_worker(slot)
            while pending or any(w.current is not None for w in self._workers.values()):
                self._dispatch(pending)
                waitables: list[Any] = []
                owners: dict[Any, tuple[str, _Worker]] = {}
                for worker in self._workers.values():
                    waitables += [worker.conn, worker.process.sentinel]
                    owners[worker.conn] = ("conn", worker)
                    owners[worker.process.sentinel] = ("sentinel", worker)
                for ready in connection.wait(waitables, timeout=1.0):
                    what, worker = owners[ready]
                    if self._workers.get(worker.slot) is not worker:
                        continue  # reaped in this round already
                    if what == "conn":
                        self._receive(worker, on_event)
                    else:
                        self._reap(worker, on_event, pending)
        except BaseException:
            self._terminate_all()
            raise
        self._stop_all()

    def _dispatch(self, pending: deque[tuple[str, Any]]) -> None:
        for worker in sorted(self._workers.values(), key=lambda w: w.slot):
            if not pending:
                return
            if worker.ready and worker.current is None and worker.process.is_alive():
                key, payload = pending.popleft()
                try:
                    send(worker.conn, (key, payload))
                except (BrokenPipeError, OSError):  # died meanwhile: the job never started
                    pending.appendleft((key, payload))
                    continue
                worker.current = key

    def _receive(self, worker: _Worker, on_event: Callable[[PoolEvent], None]) -> None:
        try:
            while worker.conn.poll():
                self._handle(worker, pickle.loads(worker.conn.recv_bytes()), on_event)
        except (EOFError, OSError):
            pass  # the worker died; its sentinel reports it

    def _handle(
        self, worker: _Worker, message: tuple[Any, ...], on_event: Callable[[PoolEvent], None]
    ) -> None:
        kind, key, when = message[0], message[1], message[2]
        slot = worker.slot
        if kind == "ready":
            worker.ready = True
            self._startup_failures = 0
        elif kind == "started":
            on_event(PoolEvent("started", key, slot, when))
        elif kind == "progress":
            step, total, loss = message[3], message[4], message[5]
            on_event(PoolEvent("progress", key, slot, when, step=step, total=total, loss=loss))
        elif kind == "finished":
            worker.current = None
            on_event(PoolEvent("finished", key, slot, when, result=message[3]))
        elif kind == "failed":
            worker.current = None
            on_event(PoolEvent("failed", key, slot, when, error=message[3], detail=message[4]))

    def _reap(
        self,
        worker: _Worker,
        on_event: Callable[[PoolEvent], None],
        pending: deque[tuple[str, Any]],
    ) -> None:
        self._receive(worker, on_event)  # whatever it said before it died
        worker.process.join(timeout=1.0)
        code = worker.process.exitcode
        del self._workers[worker.slot]
        worker.conn.close()
        if not worker.ready:
            self._startup_failures += 1
            if self._startup_failures >= _STARTUP_FAILURES_ALLOWED:
                raise RankFailedError(
                    worker.slot,
                    f"job worker exited with {_describe_exit(code)} before it was ready "
                    f"({self._startup_failures} times in a row); see its error above",
                )
        if worker.current is not None:
            on_event(
                PoolEvent(
                    "failed",
                    worker.current,
                    worker.slot,
                    time.perf_counter(),
                    error=f"WorkerDied: worker {worker.slot} died ({_describe_exit(code)})",
                )
            )
        if pending:
            self._start_worker(worker.slot)

    def _stop_all(self) -> None:
        for worker in self._workers.values():
            if not worker.ready:  # still starting (a replacement): it holds no work
                worker.process.kill()
                continue
            with contextlib.suppress(BrokenPipeError, OSError):
                send(worker.conn, None)
        for worker in self._workers.values():
            worker.process.join(timeout=10.0)
        self._terminate_all()

    def _terminate_all(self) -> None:
        for worker in self._workers.values():
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.perf_counter() + 5.0
        for worker in self._workers.values():
            worker.process.join(timeout=max(0.1, deadline - time.perf_counter()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2.0)
            worker.conn.close()
        self._workers.clear()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = "; out of memory?" if -code == signal.SIGKILL else ""
        return f"{name}{hint}"
    return f"exit code {code}"
