"""Start the fork server early, so that it imports torch while this process does other work.

:func:`~parnn.launch.launch` forks its ranks from multiprocessing's fork server (the default
``start_method="forkserver"``), which imports torch once, when it starts. Started by the
first launch, that import (2-4 s, and as much again for ``torch.distributed.pipelining``)
comes after everything the command did before; started by :func:`start_forkserver` at the
top of a command, it runs on another core while this process imports torch and loads the
data, and the ranks are forked with everything already imported::

    before   command: import torch, plan, data │ server: import torch │ ranks: import engine │ step
    after    command: import torch, plan, data │ ranks (forked, warm) │ step
             server:  import torch + engine    │

The server lives as long as this process and serves every later launch; ``preload`` only
counts when it is not running yet. This module imports no torch.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
from collections.abc import Sequence

__all__ = ["THREAD_ENV_VARS", "start_forkserver"]

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_ALWAYS = ("parnn.launch.supervisor", "parnn.launch.worker")  # what every rank runs
# Set when torchrun or an MPI launcher started this process: it starts no ranks of its own.
_LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")


def start_forkserver(preload: Sequence[str] = (), *, threads: int = 1) -> bool:
    """Start the fork server now (if it is not running), importing the parnn launcher and
    the modules in ``preload`` (e.g. ``"parnn.pipeline.worker"``) in it; returns at once.

    ``threads`` is the intra-op thread count the server's torch sizes its pools for (each
    rank sets its own again when it starts). Returns False, starting nothing, where there
    is no fork server (not Linux/macOS) or where a launcher (torchrun, mpirun) started this
    process; True otherwise.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    if any(name in os.environ for name in _LAUNCHER_VARS):
        return False
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        list(dict.fromkeys([*_ALWAYS, *preload]))
    )
    saved = {name: os.environ.get(name) for name in THREAD_ENV_VARS}
    os.environ.update({name: str(threads) for name in THREAD_ENV_VARS})
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return True
