"""The child side of :func:`parnn.launch.launch`: one rank."""

from __future__ import annotations

import atexit
import contextlib
import datetime
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

import torch.distributed as dist

from parnn.errors import show_warning_line
from parnn.launch.config import LaunchConfig
from parnn.launch.environment import is_loopback, loopback_interface
from parnn.launch.placement import pin_current_process

__all__ = ["child_main", "is_loopback", "loopback_interface", "one_line"]


def _die_with_launcher(conn: Connection) -> None:
    """Exit when the launcher dies, so that no rank is ever orphaned.

    Two guards: the launcher's end of the result pipe closes when it dies, which poll()
    reports on ours (any start method; a watcher thread); and on Linux the kernel sends
    SIGKILL when the parent dies (PR_SET_PDEATHSIG; the parent is the launcher under
    spawn, the fork server under forkserver), which works even if Python is stuck.
    """
    parent_pid = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PDEATHSIG
        if os.getppid() != parent_pid:  # the parent died before the request took effect
            os._exit(1)
    poller = select.poll()
    poller.register(conn.fileno(), 0)  # POLLERR/POLLHUP are always reported

    def watch() -> None:
        for _, event in poller.poll():
            if event & (select.POLLERR | select.POLLHUP):
                os._exit(1)

    threading.Thread(target=watch, name="parnn-launcher-watch", daemon=True).start()


def one_line(exc: BaseException) -> str:
    """``"<ExcType>: <message>"`` on one line, at most ~500 characters."""
    text = " ".join(str(exc).split())
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _send(conn: Connection, message: tuple[Any, ...]) -> None:
    # Plain pickle copies tensors into the message. multiprocessing's own pickler would
    # share their memory through a file descriptor fetched from this process later, when
    # it may have exited already.
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def child_main(
    conn: Connection,
    rank: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    config: LaunchConfig,
    cores: tuple[int, ...],
    port: int,
    environ: dict[str, str],
) -> None:
    """One rank: report ("started"), then ("ok", result) or ("error", detail, traceback,
    time.monotonic()) on the pipe to the parent."""
    warnings.showwarning = show_warning_line  # one line, as in the CLI
    _die_with_launcher(conn)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    world_size = config.num_processes
    # The launcher's environment as of launch() (a forkserver child has the server's).
    os.environ.clear()
    os.environ.update(environ)
    os.environ.update(
        MASTER_ADDR=config.master_addr,
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
        PARNN_WORKER_PID=str(os.getpid()),  # for torchrun_env(): not a torchrun rank
    )
    if not config.init_process_group:  # fn's env:// rendezvous: the launcher's store
        os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "True"
    if "GLOO_SOCKET_IFNAME" not in os.environ and is_loopback(config.master_addr):
        interface = loopback_interface()
        if interface is not None:  # gloo's pairs listen on loopback too, not the hostname's
            os.environ["GLOO_SOCKET_IFNAME"] = interface
    try:
        _send(conn, ("started",))
        pin_current_process(cores, config.threads_per_process)
        if config.init_process_group:
            timeout = datetime.timedelta(seconds=config.failure_timeout_s)
            store = dist.TCPStore(config.master_addr, port, world_size, False, timeout=timeout)
            dist.init_process_group(
                config.backend, store=store, rank=rank, world_size=world_size, timeout=timeout
            )
        result = fn(rank, world_size, *args)
        if config.init_process_group and dist.is_initialized():
            dist.destroy_process_group()
        _send(conn, ("ok", result))  # a result that cannot be pickled fails here, reported below
        conn.close()
        atexit._run_exitfuncs()  # then skip the slow teardown of torch's modules (~0.5 s)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
        with contextlib.suppress(Exception):
            _send(conn, ("error", one_line(exc), traceback.format_exc(), time.monotonic()))
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(1)  # skip interpreter teardown: gloo threads may be stuck on dead peers
