"""The worker side of :class:`parnn.jobs.pool.WorkerPool`: one process, many jobs.

    pin to its cores, set threads, say "ready"
    loop: receive (key, payload) | None
          "started" -> job_fn(context, payload, reporter) -> "finished" result | "failed" error
                       (the reporter sends "progress" meanwhile)

Messages are pickled tuples on the worker's own pipe: (kind, key, time.perf_counter(), ...).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import select
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from parnn.errors import show_warning_line
from parnn.launch import pin_current_process

__all__ = ["JobFunction", "JobReporter", "do_nothing", "one_line", "send", "worker_main"]


def send(conn: Connection, message: tuple[Any, ...] | None) -> None:
    # Plain pickle: results are copied, never shared through descriptors that the sender
    # (which may exit right after) would have to serve later.
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


class JobReporter:
    """Handed to a running job: sends its progress to the parent."""

    def __init__(self, conn: Connection, key: str) -> None:
        self._conn = conn
        self.key = key

    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        """Report that ``step`` of ``total`` steps are done; ``loss`` is the latest."""
        send(self._conn, ("progress", self.key, time.perf_counter(), step, total, loss))


# (context, payload, reporter) -> result: a picklable top-level function.
JobFunction = Callable[[Any, Any, JobReporter], dict[str, Any]]


def _die_with_parent(conn: Connection) -> None:
    """Exit when the parent dies: PR_SET_PDEATHSIG (Linux; the parent is the fork server
    under forkserver, which exits with the pool's process) and a pipe hang-up watcher
    (which also covers a parent that died before the request took effect)."""
    parent_pid = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the request took effect
            os._exit(1)
    poller = select.poll()
    poller.register(conn.fileno(), 0)  # POLLERR/POLLHUP are always reported

    def watch() -> None:
        for _, event in poller.poll():
            if event & (select.POLLERR | select.POLLHUP):
                os._exit(1)

    threading.Thread(target=watch, name="parnn-pool-watch", daemon=True).start()


def do_nothing() -> None:
    pass


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def worker_main(
    conn: Connection,
    cores: tuple[int, ...] | None,
    threads: int,
    job_fn: JobFunction,
    context: Any,
) -> None:
    warnings.showwarning = show_warning_line  # one line, as in the CLI
    _die_with_parent(conn)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, _raise_system_exit)  # unwind: temporary files removed
    code = 0
    try:
        pin_current_process(cores, threads)
        send(conn, ("ready", "", time.perf_counter()))
        while True:
            try:
                message = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            if message is None:
                break
            key, payload = message
            send(conn, ("started", key, time.perf_counter()))
            try:
                result = job_fn(context, payload, JobReporter(conn, key))
            except Exception as error:  # noqa: BLE001 - a job's failure is data (MemoryError too)
                send(conn, ("failed", key, time.perf_counter(), one_line(error), _trace()))
            else:
                send(conn, ("finished", key, time.perf_counter(), result))
    except (KeyboardInterrupt, SystemExit):
        code = 1
    finally:
        with contextlib.suppress(Exception):
            conn.close()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)  # skip the slow teardown of torch's modules


def _trace() -> str:
    return traceback.format_exc()
