"""The parent side of :func:`parnn.launch.launch`: start the ranks, collect results,
stop everything at the first failure."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import multiprocessing
import os
import pickle
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

import psutil
import torch.distributed as dist

from parnn.errors import ConfigError, ParnnWarning, RankFailedError
from parnn.launch.config import LaunchConfig, usable_cores
from parnn.launch.placement import THREAD_ENV_VARS, plan_cores, warn_if_oversubscribed
from parnn.launch.worker import child_main, one_line
from parnn.transport import remove_segments_of

__all__ = ["is_peer_symptom", "launch", "leftover_processes", "listening_store"]

T = TypeVar("T")

_PORT_ATTEMPTS = 3
_EXIT_GRACE_S = 10.0  # seconds a rank may take to exit after sending its result
_ENV_LOCK = threading.Lock()


def _check_importable(fn: Callable[..., Any]) -> None:
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        pickle.dumps(fn)  # by reference: module and name
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing
        raise ConfigError(
            f"fn={name}: the worker processes cannot import it ({type(exc).__name__}); pass "
            "a top-level function defined in a module (not a lambda or a nested function)"
        ) from exc


@contextlib.contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    """Set the OpenMP/MKL thread variables while children start: a spawned child imports
    torch (and sizes its thread pools) before any of our code runs in it."""
    with _ENV_LOCK:
        saved = {name: os.environ.get(name) for name in THREAD_ENV_VARS}
        os.environ.update({name: str(threads) for name in THREAD_ENV_VARS})
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def launch(fn: Callable[..., T], config: LaunchConfig, *args: Any) -> list[T]:
    """Run ``fn(rank, world_size, *args)`` in ``config.num_processes`` fresh processes and
    return the results in rank order.

    ``fn``, ``args`` and the results must be picklable; ``fn`` must be a top-level function
    of an importable module (or of a script guarded by ``if __name__ == "__main__"``). If a
    rank raises or dies, the other ranks are killed and :class:`RankFailedError` names it.
    """
    _check_importable(fn)
    cores = config.cores or usable_cores()
    plan = plan_cores(config.num_processes, config.threads_per_process, cores)
    warn_if_oversubscribed(config.num_processes, config.threads_per_process, len(cores))
    for attempt in range(_PORT_ATTEMPTS):
        # The store is hosted here even when fn initialises its process group itself
        # (env://): the ranks connect to it as clients (TORCHELASTIC_USE_AGENT_STORE), so
        # that no rank opens a listener on every interface.
        store = _host_store(config)
        port = store.port
        try:
            return _run_ranks(fn, args, config, plan, port)
        except RankFailedError as error:
            retry = config.master_port is None and "EADDRINUSE" in error.detail
            if not retry or attempt + 1 == _PORT_ATTEMPTS:
                raise
        finally:
            del store  # stops the store server
    raise AssertionError("unreachable")  # pragma: no cover


def listening_store(
    host: str, port: int, *, timeout_s: float, world_size: int | None = None
) -> dist.TCPStore:
    """A TCPStore server listening on ``host:port`` only (port 0: a free one, picked by the
    kernel atomically): torch's own server listens on every interface. Its port is
    ``store.port``; OSError or RuntimeError when it cannot listen there."""
    listener = _listen(host, port)
    bound_port = int(listener.getsockname()[1])
    fd = listener.detach()  # the store owns the socket from here on
    try:
        return dist.TCPStore(
            host,
            bound_port,
            world_size,
            True,
            timeout=datetime.timedelta(seconds=timeout_s),
            wait_for_workers=False,
            master_listen_fd=fd,
        )
    except (RuntimeError, OSError):
        os.close(fd)
        raise


def _host_store(config: LaunchConfig) -> dist.TCPStore:
    # The parent hosts the rendezvous store, bound to master_addr only (127.0.0.1 by
    # default); the store outlives any one rank.
    try:
        return listening_store(
            config.master_addr, config.master_port or 0, timeout_s=config.failure_timeout_s
        )
    except (RuntimeError, OSError) as exc:
        raise ConfigError(
            f"master_addr={config.master_addr!r} master_port={config.master_port}: cannot "
            f"listen there ({exc}); leave master_port unset to get a free port, and give an "
            "address of this machine (127.0.0.1 on one machine)"
        ) from exc


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` only (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


# Errors a rank sees because a peer died: symptoms, not causes. MPICH raises "Other MPI
# error" in a collective whose peer was killed (a rank's own failures raise Python errors).
_PEER_GONE = (
    "closed by peer",
    "reset by peer",
    "broken pipe",
    "connection refused",
    "other mpi error",
    "proc_failed",
)


def is_peer_symptom(detail: str) -> bool:
    """Whether a rank's error only says that a peer went away (the peer's failure is the
    cause to report, not this)."""
    return any(text in detail.lower() for text in _PEER_GONE)


@dataclass(slots=True)
class _Failure:
    rank: int
    detail: str  # one line: "<ExcType>: <message>", or what the exit status means
    traceback: str
    at: float  # time.monotonic() of the failure (the child's) or of its discovery
    symptom: bool  # looks like the consequence of another rank's failure


def _exit_detail(exitcode: int, started: bool) -> str:
    if exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        hint = (
            " (the kernel's OOM killer sends it when memory runs out)" if name == "SIGKILL" else ""
        )
        return f"process killed by {name} (signal {number}){hint}"
    if not started:
        return (
            f"process exited with code {exitcode} while starting, before fn ran: fn must be "
            "importable by a fresh interpreter (top-level in a module, or in a script guarded "
            "by if __name__ == '__main__'); see its stderr"
        )
    if exitcode == 0:
        return "process exited with code 0 without returning a result (os._exit(0) in fn?)"
    return (
        f"process exited with code {exitcode} without raising (os._exit, or a crash in native code)"
    )


FORKSERVER_FD_BUDGET = 200
"""Tensors a fork-server launch shares by file descriptor at most: the fork server refuses
to pass more than 256 descriptors to a child ('too many fds'; MobileNetV2 and ResNet-50 have
more parameters and buffers than that)."""


def _tensor_count(value: Any, depth: int = 0) -> int:
    """Tensors ``value`` would share with a child: in modules (parameters and buffers),
    dataclasses, lists, tuples and dicts, a few levels deep."""
    import torch

    if depth > 6:
        return 0
    if isinstance(value, torch.Tensor):
        return 1
    if isinstance(value, torch.nn.Module):
        return len(value.state_dict(keep_vars=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(
            _tensor_count(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)
        )
    if isinstance(value, (list, tuple)):
        return sum(_tensor_count(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return sum(_tensor_count(item, depth + 1) for item in value.values())
    return 0


@contextlib.contextmanager
def _sharing_for(args: tuple[Any, ...], start_method: str) -> Iterator[None]:
    """Share the tensors of ``args`` by file name instead of by file descriptor while the
    children start, when a fork server could not pass them all."""
    import torch.multiprocessing as torch_mp

    if start_method != "forkserver" or _tensor_count(args) <= FORKSERVER_FD_BUDGET:
        yield
        return
    previous = torch_mp.get_sharing_strategy()
    torch_mp.set_sharing_strategy("file_system")
    try:
        yield
    finally:
        torch_mp.set_sharing_strategy(previous)


def _run_ranks(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    config: LaunchConfig,
    plan: list[tuple[int, ...]],
    port: int,
) -> list[Any]:
    context: SpawnContext | ForkServerContext
    if config.start_method == "forkserver":
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["parnn.launch"])  # children start with torch loaded
    else:
        context = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = []
    readers: list[Connection] = []
    try:
        # Unpinned ranks get the launcher's affinity (a forkserver child has the server's).
        cores = plan if config.pin else [usable_cores()] * config.num_processes
        with _thread_env(config.threads_per_process), _sharing_for(args, config.start_method):
            environ = dict(os.environ)
            for rank in range(config.num_processes):
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(
                    target=child_main,
                    args=(writer, rank, fn, args, config, cores[rank], port, environ),
                    name=f"parnn-rank-{rank}",
                )
                readers.append(reader)
                try:
                    process.start()  # pickles args (tensors in shared memory stay shared)
                except (pickle.PicklingError, TypeError, AttributeError) as exc:
                    raise ConfigError(
                        f"the arguments of {getattr(fn, '__qualname__', fn)} cannot be sent to "
                        f"the worker processes ({type(exc).__name__}: {exc}); pass picklable "
                        "values"
                    ) from exc
                finally:
                    writer.close()  # the child holds the only writer: its death closes the pipe
                processes.append(process)
        return _supervise(processes, readers)
    finally:
        _stop(processes, config.kill_grace_s)
        for reader in readers:
            reader.close()
        for stopped in processes:  # a rank killed while setting up a shm transport
            if stopped.pid is not None:
                remove_segments_of(stopped.pid)


def _supervise(processes: Sequence[BaseProcess], readers: Sequence[Connection]) -> list[Any]:
    """Collect every rank's result, or stop at the first failure and raise it."""
    results: dict[int, Any] = {}
    started: set[int] = set()
    failures: list[_Failure] = []
    reported: set[int] = set()
    open_readers = {reader: rank for rank, reader in enumerate(readers)}
    running = {process.sentinel: rank for rank, process in enumerate(processes)}
    first_failure_at = 0.0
    deadline: float | None = None  # after a first failure: when to stop listening
    exit_deadline: float | None = None  # after the last result: when to stop waiting

    def receive(reader: Connection, rank: int) -> None:
        try:
            message = pickle.loads(reader.recv_bytes())
        except EOFError:
            del open_readers[reader]
            return
        except Exception as exc:  # noqa: BLE001 - a result the parent cannot unpickle
            message = (
                "error",
                f"cannot unpickle the result: {one_line(exc)}",
                "",
                time.monotonic(),
            )
        if message[0] == "started":
            started.add(rank)
        elif message[0] == "ok":
            results[rank] = message[1]
        else:
            _, detail, trace, at = message
            reported.add(rank)
            symptom = is_peer_symptom(detail)
            failures.append(_Failure(rank, detail, trace, at, symptom))

    while running or open_readers:
        until = deadline if deadline is not None else exit_deadline
        timeout = None if until is None else max(0.0, until - time.monotonic())
        ready = wait([*open_readers, *running], timeout)
        for item in ready:
            if isinstance(item, Connection):
                if item in open_readers:
                    receive(item, open_readers[item])
                continue
            assert isinstance(item, int)  # a process sentinel
            rank = running.pop(item)
            process = processes[rank]
            process.join()
            reader = readers[rank]
            while reader in open_readers and reader.poll():
                receive(reader, rank)  # what it said before it died
            exitcode = process.exitcode if process.exitcode is not None else -1
            if rank not in reported and (exitcode != 0 or rank not in results):
                detail = _exit_detail(exitcode, rank in started)
                failures.append(_Failure(rank, detail, "", time.monotonic(), symptom=False))
        if failures:
            if deadline is None:  # let near-simultaneous failures arrive, then choose
                first_failure_at = time.monotonic()
                deadline = first_failure_at + 0.25
            if all(failure.symptom for failure in failures):
                deadline = max(deadline, first_failure_at + 1.5)  # the cause is surely on its way
            if time.monotonic() >= deadline:
                break
        elif len(results) == len(processes):
            exit_deadline = exit_deadline or time.monotonic() + _EXIT_GRACE_S
            if time.monotonic() >= exit_deadline:
                stuck = sorted(running.values())
                warnings.warn(
                    f"ranks {stuck} returned their results but did not exit within "
                    f"{_EXIT_GRACE_S:g} s (stuck in an atexit handler or joining a child?); "
                    "killed them",
                    ParnnWarning,
                    stacklevel=4,
                )
                break
    if failures:
        cause = min(failures, key=lambda failure: (failure.symptom, failure.at))
        raise RankFailedError(cause.rank, cause.detail, traceback=cause.traceback)
    return [results[rank] for rank in range(len(processes))]


def _stop(processes: Sequence[BaseProcess], grace_s: float) -> None:
    """SIGTERM every live rank (and what it started), SIGKILL after ``grace_s``, reap all."""
    alive = [process for process in processes if process.is_alive()]
    descendants: list[psutil.Process] = []
    for process in alive:
        with contextlib.suppress(psutil.Error):
            descendants += psutil.Process(process.pid).children(recursive=True)
    for process in alive:
        process.terminate()
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    deadline = time.monotonic() + grace_s
    while (still := [p.sentinel for p in alive if p.is_alive()]) and time.monotonic() < deadline:
        wait(still, max(0.0, deadline - time.monotonic()))
    for process in alive:
        if process.is_alive():
            process.kill()
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
    for process in processes:
        process.join(timeout=10)


def leftover_processes() -> list[psutil.Process]:
    """Descendants of this process other than multiprocessing's and torch's own helpers (the
    fork server, the resource tracker, the shared-memory manager of torch's file_system
    sharing): empty after :func:`launch` returns or raises. For tests that assert "no
    orphans"."""
    me = os.getpid()
    leftovers = []
    for process in psutil.Process(me).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = " ".join(process.cmdline())
            helper = "multiprocessing.forkserver" in command or "resource_tracker" in command
            if "torch_shm_manager" in command:
                continue  # torch's own daemon: it unlinks the shared files when we exit
            if process.status() != psutil.STATUS_ZOMBIE and not (helper and process.ppid() == me):
                leftovers.append(process)
    return leftovers
