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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parnn.launch.config import LaunchConfig, usable_cores
    from parnn.launch.environment import DistEnv, torchrun_env
    from parnn.launch.forkserver import start_forkserver
    from parnn.launch.placement import pin_current_process, plan_cores
    from parnn.launch.supervisor import launch, leftover_processes
    from parnn.launch.torchrun import run_distributed

# Names are imported lazily: start_forkserver() runs before this process imports torch.
_LAZY = {
    "DistEnv": "parnn.launch.environment",
    "LaunchConfig": "parnn.launch.config",
    "launch": "parnn.launch.supervisor",
    "leftover_processes": "parnn.launch.supervisor",
    "pin_current_process": "parnn.launch.placement",
    "plan_cores": "parnn.launch.placement",
    "run_distributed": "parnn.launch.torchrun",
    "start_forkserver": "parnn.launch.forkserver",
    "torchrun_env": "parnn.launch.environment",
    "usable_cores": "parnn.launch.config",
}

__all__ = [
    "DistEnv",
    "LaunchConfig",
    "launch",
    "leftover_processes",
    "pin_current_process",
    "plan_cores",
    "run_distributed",
    "start_forkserver",
    "torchrun_env",
    "usable_cores",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'parnn.launch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
