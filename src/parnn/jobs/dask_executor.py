"""Jobs on a Dask distributed scheduler: the pinned pool's interface, beyond one machine.

The same jobs as :class:`~parnn.jobs.pool.WorkerPool` runs, one Dask task each, on the
workers of an existing scheduler (``tcp://HOST:8786``) or of a ``LocalCluster`` started here
(``local[:N]``). Each task declares the cores it needs as a worker resource
(``resources={"cores": threads}``), so a worker started with ``--resources cores=N`` runs
at most N cores' worth of jobs at once.

    this process (the client)                    Dask workers (any host, --nthreads 1)
    ──────────────────────────────────────       ─────────────────────────────────────────
    scatter the shared context to every worker ─> kept in the worker's memory
    submit one task per job, longest first ────> claim free cores of the host (lock files),
      (priority), resources={"cores": threads}    pin the thread, set torch's threads
    events topic  <─── log_event ─────────────── "started", "progress"...
    future done   <─── the task's return value ─ {"status": "finished" | "failed", ...}

A job that raises is returned as "failed" (its error is data, as in the pool: no retry).
A worker that dies mid-job is the scheduler's to handle: it runs the task again on another
worker, from the job's last checkpoint (``--out`` is on storage every worker reaches), at
most ``distributed.scheduler.allowed-failures`` times (3 by default); after that the
future errs with ``KilledWorker`` and the job is recorded as failed, so ``--resume``
retries it. Ctrl-C cancels every future; a running task notices at its next progress
report and stops.

Event times are the workers' wall clocks (``time.time()``), mapped onto this process's
``time.perf_counter()``: exact on one machine, as good as the hosts' clock sync on many.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from parnn.errors import ConfigError, ParnnWarning
from parnn.jobs import dask_task
from parnn.jobs.pool import PoolEvent
from parnn.jobs.worker import JobFunction, one_line

__all__ = [
    "DaskConnection",
    "DaskPool",
    "check_cluster",
    "check_cluster_run",
    "is_local_cluster",
]

LOCAL = "local"
_LOCAL_CONFIG = {
    "distributed.worker.multiprocessing-method": "forkserver",
    # The statistical profiler samples the running task's stack every 10 ms from a thread
    # of its own: CPU and GIL taken from the job, for a dashboard a local run never shows.
    "distributed.worker.profile.enabled": False,
}


def is_local_cluster(cluster: Any) -> bool:
    """True for 'local' / 'local:N' (a LocalCluster this process starts)."""
    return isinstance(cluster, str) and cluster.split(":", 1)[0].strip().lower() == LOCAL


def _local_workers(cluster: str) -> int | None:
    _, _, count = cluster.partition(":")
    if not count.strip():
        return None
    try:
        value = int(count)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"cluster {cluster!r}: 'local:N' needs N >= 1 worker processes, e.g. --cluster local:2"
        )
    return value


def check_cluster(cluster: Any) -> None:
    """Refuse what cannot name a cluster: 'local', 'local:N', a scheduler address
    ('tcp://HOST:8786', 'HOST:8786'), a ``distributed.Client`` or a cluster object."""
    if isinstance(cluster, str):
        text = cluster.strip()
        if is_local_cluster(text):
            _local_workers(text)
            return
        if "://" in text or (":" in text and text.rsplit(":", 1)[1].isdigit()):
            return
        if text.endswith(".json") and Path(text).is_file():
            return  # a scheduler file (`dask scheduler --scheduler-file PATH`)
        raise ConfigError(
            f"cluster {cluster!r} is not a scheduler address: give 'tcp://HOST:8786' (as "
            "printed by `dask scheduler`), the path of its --scheduler-file (.json), or "
            "'local[:N]' for a cluster on this machine"
        )
    if hasattr(cluster, "scheduler_address") or hasattr(cluster, "submit"):
        return
    raise ConfigError(
        f"cluster {cluster!r}: give a scheduler address, 'local[:N]', a distributed.Client "
        "or a Dask cluster object (e.g. dask_jobqueue.SLURMCluster)"
    )


def check_cluster_run(cluster: Any, root_dir: str | Path, *, workers: int | None = None) -> None:
    """Before a run touches anything: Dask is installed, and a remote cluster's run
    directory (where its workers write checkpoints) is an absolute path, on storage they
    all reach, never one relative to this process. ``workers`` (the pool's size) is
    ignored with a cluster, with a warning."""
    check_cluster(cluster)
    _import_dask()
    if workers is not None:
        warnings.warn(
            f"workers={workers} is ignored with a cluster: its workers' cores decide how many "
            "jobs run at once (start workers with --resources cores=N)",
            ParnnWarning,
            stacklevel=3,
        )
    if is_local_cluster(cluster):
        return
    if not Path(root_dir).is_absolute():
        raise ConfigError(
            f"--out {root_dir} is relative, but the jobs run on the workers of {cluster}: give "
            "an absolute path on storage every worker reaches (e.g. --out /shared/runs/kf), "
            "or use --cluster local"
        )


def _import_dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "--cluster needs Dask's distributed scheduler: pip install 'parnn[cluster]' "
            "(or pip install 'dask[distributed]')"
        ) from None
    return distributed


class DaskConnection:
    """A client of the cluster (and the LocalCluster it started, for 'local[:N]').

    ``with DaskConnection("tcp://host:8786", threads_per_job=1) as connection: ...``
    connects, waits up to ``wait_s`` for a worker that offers ``cores >= threads_per_job``,
    and has every worker import ``preload``; leaving closes what it opened.
    """

    def __init__(
        self,
        cluster: Any,
        *,
        threads_per_job: int = 1,
        preload: Sequence[str] = (),
        wait_s: float = 60.0,
        worker_children: bool = False,
    ) -> None:
        check_cluster(cluster)
        self.cluster = cluster
        self.threads_per_job = threads_per_job
        self.worker_children = worker_children
        self.preload = tuple(preload)
        self.wait_s = wait_s
        self.remote = not is_local_cluster(cluster)
        self.client: Any = None
        self._owned: list[Any] = []  # what this connection started and must close

    @property
    def address(self) -> str:
        return str(self.client.scheduler.address) if self.client is not None else ""

    def __enter__(self) -> DaskConnection:
        distributed = _import_dask()
        import dask

        try:
            self._open(distributed, dask)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self, distributed: Any, dask: Any) -> None:
        cluster = self.cluster
        if isinstance(cluster, str) and is_local_cluster(cluster):
            from parnn.launch import usable_cores

            count = _local_workers(cluster) or max(1, len(usable_cores()) // self.threads_per_job)
            # Worker processes fork from multiprocessing's fork server with torch and the
            # jobs' modules loaded (as the pinned pool's do), not a fresh spawn each.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([*self.preload, "distributed"])
            config = dict(_LOCAL_CONFIG)
            if self.worker_children:  # a job that starts processes (a pipeline's ranks)
                config["distributed.worker.daemon"] = False
            with dask.config.set(config):
                local = distributed.LocalCluster(
                    n_workers=count,
                    threads_per_worker=1,
                    processes=True,
                    resources={"cores": self.threads_per_job},
                    host="127.0.0.1",  # every listener binds loopback
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            self._owned.append(local)
            cluster = local
        if isinstance(cluster, str):
            text = cluster.strip()
            where = {"scheduler_file": text} if text.endswith(".json") else {"address": text}
            try:
                client = distributed.Client(**where, timeout=f"{self.wait_s}s")
            except OSError as error:
                raise ConfigError(
                    f"cannot reach the Dask scheduler at {cluster} ({one_line(error)}): start "
                    "it with `dask scheduler` and give the address it prints"
                ) from None
            self._owned.append(client)
        elif hasattr(cluster, "submit"):
            client = cluster  # the user's Client: theirs to close
        else:
            client = distributed.Client(cluster)
            self._owned.append(client)
        self.client = client
        self._wait_for_cores()
        if self.preload:
            client.run(dask_task.preload, self.preload)

    def _wait_for_cores(self) -> None:
        deadline = time.monotonic() + self.wait_s
        while True:
            if self.slots() > 0:
                return
            if time.monotonic() > deadline:
                workers = self.client.scheduler_info(n_workers=-1)["workers"]
                raise ConfigError(
                    f"no worker of the Dask cluster at {self.address} offers the resource "
                    f"cores>={self.threads_per_job} ({len(workers)} workers after "
                    f"{self.wait_s:.0f} s): start workers with `dask worker {self.address} "
                    "--nthreads 1 --resources cores=1`"
                )
            time.sleep(0.2)

    def workers(self) -> dict[str, dict[str, Any]]:
        """The scheduler's view of its workers, by address."""
        info = self.client.scheduler_info(n_workers=-1)
        return dict(info.get("workers", {}))

    def slots(self) -> int:
        """Jobs the cluster runs at once: each worker's cores // threads per job."""
        return sum(
            int(float(worker.get("resources", {}).get("cores", 0)) // self.threads_per_job)
            for worker in self.workers().values()
        )

    def close(self) -> None:
        for thing in reversed(self._owned):
            with contextlib.suppress(Exception):
                thing.close()
        self._owned.clear()
        self.client = None


class DaskPool:
    """Runs jobs on a Dask cluster, with :class:`~parnn.jobs.pool.WorkerPool`'s interface:
    ``prepare()``, then ``run(jobs, on_event)`` with the same :class:`PoolEvent` s (the
    event's ``worker`` is the Dask worker's index, its ``host`` the worker's host).

    ``threads_of(payload)``, when given, is the cores one job needs (``threads`` is then
    the most any job needs); ``worker_children`` lets the jobs start processes (a
    LocalCluster's workers are then not daemonic)."""

    def __init__(
        self,
        job_fn: JobFunction,
        context: Any,
        cluster: Any,
        *,
        threads: int = 1,
        preload: Sequence[str] = (),
        threads_of: Callable[[Any], int] | None = None,
        worker_children: bool = False,
    ) -> None:
        self.job_fn = job_fn
        self.context = context
        self.connection = DaskConnection(
            cluster, threads_per_job=threads, preload=preload, worker_children=worker_children
        )
        self.threads = threads
        self.threads_of = threads_of
        self._slots: dict[str, int] = {}  # worker address -> index (the event's worker)
        self._hosts: dict[str, str] = {}  # worker address -> host name
        self._started_wall = time.time()
        self._facts: dict[str, Any] = {}
        self._num_slots = 0

    @property
    def num_slots(self) -> int:
        """Jobs the cluster ran at once (its cores // threads per job) when :meth:`run`
        began; 0 before."""
        return self._num_slots

    def prepare(self) -> None:
        """Connect (start the LocalCluster for 'local'), wait for a worker with cores, have
        every worker import ``preload``, and number the workers: seconds, once, so that a
        timed :meth:`run` measures the jobs, as the pool's ``prepare`` does."""
        self.connection.__enter__()
        for address in sorted(self.connection.workers()):
            self._slot(address)

    def close(self) -> None:
        """Close the client (and the LocalCluster this pool started)."""
        self.connection.close()

    def _slot(self, address: str, host: str | None = None) -> int:
        if address not in self._slots:
            self._slots[address] = len(self._slots)
        if host and address not in self._hosts:
            self._hosts[address] = host
        return self._slots[address]

    def session_facts(self) -> dict[str, Any]:
        """For the session's record: the scheduler, its workers and their CPU samples."""
        return dict(self._facts)

    def run(self, jobs: Sequence[tuple[str, Any]], on_event: Callable[[PoolEvent], None]) -> None:
        """Run ``jobs`` ((key, payload) pairs, started in this order) and call ``on_event``
        for each event; returns when every job has finished or failed; any exception
        (Ctrl-C) cancels every task first.

        Only as many tasks as the cluster has free slots are submitted at a time, the next
        one when one ends: the order stays ours (as in the pool), and a worker that dies
        takes only its running job with it (the scheduler counts a lost worker against
        every task it held, queued ones too)."""
        if not jobs:
            return
        client = self.connection.client
        self._num_slots = self.connection.slots()
        self._started_wall = time.time()
        clock = time.time() - time.perf_counter()  # wall - perf on this machine
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        topic = f"parnn-jobs-{uuid.uuid4().hex[:12]}"
        client.subscribe_topic(topic, lambda event: events.put(("event", event[1])))
        context = client.scatter(self.context, broadcast=True, hash=False)
        pending = deque(enumerate(jobs))
        futures: dict[str, Any] = {}  # running or queued on the cluster, by job key

        def submit(capacity: int) -> None:
            while pending and len(futures) < max(1, capacity):
                index, (key, payload) = pending.popleft()
                threads = self.threads_of(payload) if self.threads_of else self.threads
                future = client.submit(
                    dask_task.run_task,
                    self.job_fn,
                    context,
                    key,
                    payload,
                    threads,
                    topic,
                    key=f"parnn-job-{topic[11:]}-{index}",
                    resources={"cores": threads},
                    priority=len(jobs) - index,  # higher first: the given order
                    pure=False,
                )
                future.add_done_callback(lambda done, key=key: events.put(("done", (key, done))))
                futures[key] = future

        try:
            submit(self._num_slots)
            self._loop(futures, events, on_event, clock, refill=submit)
        except BaseException:
            with contextlib.suppress(Exception):
                client.cancel(list(futures.values()), force=True)
            raise
        finally:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(topic)
            with contextlib.suppress(Exception):
                client.cancel([context], force=True)
            self._facts = self._collect_facts(clock)

    def _loop(
        self,
        futures: dict[str, Any],
        events: queue.Queue[tuple[str, Any]],
        on_event: Callable[[PoolEvent], None],
        clock: float,
        *,
        refill: Callable[[int], None],
    ) -> None:
        ran_on: dict[str, list[str]] = {}  # job key -> worker addresses it started on
        while futures:
            try:
                kind, item = events.get(timeout=1.0)
            except queue.Empty:
                continue
            if kind == "event":
                key = item.get("key")
                if key not in futures:
                    continue  # late news of a job already done
                address = str(item.get("worker", ""))
                slot = self._slot(address, item.get("host"))
                when = float(item["time"]) - clock
                if item["kind"] == "started":
                    ran_on.setdefault(key, []).append(address)
                    on_event(PoolEvent("started", key, slot, when, host=self._hosts.get(address)))
                elif item["kind"] == "progress":
                    on_event(
                        PoolEvent(
                            "progress",
                            key,
                            slot,
                            when,
                            step=int(item["step"]),
                            total=int(item["total"]),
                            loss=item.get("loss"),
                            host=self._hosts.get(address),
                        )
                    )
                continue
            key, future = item
            if futures.get(key) is not future:
                continue
            del futures[key]
            refill(self.connection.slots())  # first: the cluster is never idle for our sake
            self._finish(key, future, ran_on, on_event, clock)

    def _finish(
        self,
        key: str,
        future: Any,
        ran_on: dict[str, list[str]],
        on_event: Callable[[PoolEvent], None],
        clock: float,
    ) -> None:
        addresses = ran_on.get(key, [])
        if future.status == "finished":
            outcome = future.result()
            address = str(outcome["worker"])
            slot = self._slot(address, str(outcome["host"]))
            host = self._hosts[address]
            if not addresses or addresses[-1] != address:  # its "started" is still on its way
                addresses.append(address)
                on_event(PoolEvent("started", key, slot, outcome["started"] - clock, host=host))
            when = float(outcome["time"]) - clock
            if outcome["status"] == "finished":
                result = dict(outcome["result"])
                result["host"] = host
                if len(addresses) > 1:
                    lost = ", ".join(addresses[:-1])
                    result["warnings"] = [
                        *result.get("warnings", []),
                        f"run again on {address} after worker {lost} was lost "
                        "(resumed from its last checkpoint)",
                    ]
                on_event(PoolEvent("finished", key, slot, when, result=result, host=host))
            else:
                on_event(
                    PoolEvent(
                        "failed",
                        key,
                        slot,
                        when,
                        error=outcome["error"],
                        detail=outcome["detail"],
                        result={"host": host},
                        host=host,
                    )
                )
            return
        # The task itself did not return: its worker died too often, or it was cancelled.
        address = addresses[-1] if addresses else ""
        slot = self._slot(address) if address else -1
        last_host = self._hosts.get(address)
        if future.status == "error":
            error = future.exception()
            name = type(error).__name__
            if name == "KilledWorker":
                text = (
                    f"WorkerDied: the workers running it died {len(addresses) or 'several'} "
                    f"time(s) ({', '.join(addresses) or 'unknown'}); Dask gave up "
                    "(distributed.scheduler.allowed-failures)"
                )
            else:
                text = one_line(error)
        else:
            text = f"Cancelled: the scheduler dropped the task ({future.status})"
        on_event(
            PoolEvent(
                "failed",
                key,
                slot,
                time.perf_counter(),
                error=text,
                result={"host": last_host} if last_host else None,
                host=last_host,
            )
        )

    def _collect_facts(self, clock: float) -> dict[str, Any]:
        facts: dict[str, Any] = {"executor": "dask", "scheduler": self.connection.address}
        workers = [
            {"address": address, "index": index, "host": self._hosts.get(address)}
            for address, index in sorted(self._slots.items(), key=lambda item: item[1])
        ]
        facts["dask_workers"] = workers
        try:
            samples = self.connection.client.run(dask_task.monitor_since, self._started_wall)
        except Exception as error:  # noqa: BLE001 - the plot is a bonus, the results are not
            warnings.warn(
                f"no CPU samples from the Dask workers ({one_line(error)})",
                ParnnWarning,
                stacklevel=2,
            )
            return facts
        facts["worker_cpu"] = [  # times: seconds since the jobs were submitted
            {
                "address": address,
                "host": sample["host"],
                "cores": sample["cores"],
                "times_s": [round(stamp - self._started_wall, 3) for stamp in sample["times"]],
                "cpu_percent": [round(float(value), 1) for value in sample["cpu"]],
            }
            for address, sample in sorted(samples.items())
        ]
        return facts
