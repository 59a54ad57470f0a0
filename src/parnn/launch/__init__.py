"""Start one pinned process per rank, run a function in each, and stop them all when one fails.

    parent: launch()                         child: one per rank (a fresh process)
    ───────────────────────────────────      ──────────────────────────────────────────
    host the rendezvous store (free port)    die with the launcher (pipe hang-up, PDEATHSIG)
    start ranks 0..N-1 ────────────────────> pin to its cores, set torch threads
                                             init_process_group(gloo) from the store
    wait on pipes and process sentinels      result = fn(rank, world_size, *args)
        "ok", result       <──── pipe ─────  on return
        "error", traceback <──── pipe ─────  on an exception
        exit status        <── sentinel ───  on a signal, os._exit or the OOM killer
    first failure: SIGTERM the others, SIGKILL after a grace, raise RankFailedError

Ranks are never forked from the launcher (which may run threads): they are forked from
multiprocessing's fork server, a fresh interpreter that has only imported torch
once (start_method="forkserver", ~0.2 s a launch), or are fresh interpreters that each
import torch (start_method="spawn", ~2-4 s a launch).

Under ``torchrun`` the launcher has already started the processes: :func:`run_distributed`
pins this one to its local rank's cores and calls ``fn`` in place.
"""

from __future__ import annotations

from parnn.launch.config import LaunchConfig, usable_cores
from parnn.launch.placement import pin_current_process, plan_cores
from parnn.launch.supervisor import launch, leftover_processes
from parnn.launch.torchrun import DistEnv, run_distributed, torchrun_env

__all__ = [
    "DistEnv",
    "LaunchConfig",
    "launch",
    "leftover_processes",
    "pin_current_process",
    "plan_cores",
    "run_distributed",
    "torchrun_env",
    "usable_cores",
]
