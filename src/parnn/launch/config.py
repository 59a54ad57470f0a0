"""What to launch: the number of processes and how to place them."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist

from parnn.errors import ConfigError

__all__ = ["LaunchConfig", "usable_cores"]

_KNOWN_BACKENDS = ("gloo", "nccl", "mpi", "ucc")
_START_METHODS = ("spawn", "forkserver")  # never "fork": the parent may run threads


def usable_cores() -> tuple[int, ...]:
    """The CPU ids this process may run on (its affinity mask), in increasing order."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))  # pragma: no cover - not Linux


@dataclass(kw_only=True, slots=True)
class LaunchConfig:
    """How many processes to start on this machine and how to place them."""

    num_processes: int
    """Ranks to start (the world size); at least 1."""
    backend: str = "gloo"
    """torch.distributed backend: 'gloo' on CPU, 'nccl' on GPUs."""
    threads_per_process: int = 1
    """Intra-op threads of each rank (torch.set_num_threads, OMP/MKL variables)."""
    pin: bool = True
    """Pin each rank to its own core(s) with os.sched_setaffinity."""
    cores: tuple[int, ...] | None = None
    """CPU ids to place ranks on, round-robin; None = every usable core."""
    master_addr: str = "127.0.0.1"
    """Address of the rendezvous store the parent hosts."""
    master_port: int | None = None
    """Port of the rendezvous store; None = a free port chosen by the kernel."""
    init_process_group: bool = True
    """Initialise the default process group before calling fn (else fn does it)."""
    failure_timeout_s: float = 30.0
    """Seconds a rank waits in rendezvous or in one collective/recv before it gives up."""
    kill_grace_s: float = 2.0
    """After a failure: seconds between SIGTERM and SIGKILL for the surviving ranks."""
    start_method: str = "forkserver"
    """'spawn' (a fresh interpreter per rank, imports torch: ~2 s) or 'forkserver' (ranks
    forked from one fresh server process that has torch loaded: ~0.2 s after the first)."""

    def __post_init__(self) -> None:
        for name in ("num_processes", "threads_per_process"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be an integer >= 1; e.g. {name}=2")
        if self.backend not in _KNOWN_BACKENDS:
            raise ConfigError(
                f"backend={self.backend!r} is unknown: choose one of {', '.join(_KNOWN_BACKENDS)}"
                " ('gloo' on CPU)"
            )
        if not dist.is_backend_available(self.backend):
            available = [name for name in _KNOWN_BACKENDS if dist.is_backend_available(name)]
            raise ConfigError(
                f"backend={self.backend!r} is not available in this torch build: "
                f"available are {', '.join(available) or 'none'}; use backend='gloo' on CPU"
            )
        if self.start_method not in _START_METHODS:
            raise ConfigError(
                f"start_method={self.start_method!r}: choose one of {', '.join(_START_METHODS)}"
            )
        if self.cores is not None:
            self.cores = tuple(self.cores)
            usable = usable_cores()
            bad = [core for core in self.cores if core not in usable]
            if not self.cores or bad or len(set(self.cores)) != len(self.cores):
                raise ConfigError(
                    f"cores={self.cores}: must be distinct CPU ids this process may use "
                    f"(usable: {', '.join(map(str, usable))}); pick from those or leave "
                    "cores unset"
                )
        if self.master_port is not None and not 1 <= self.master_port <= 65535:
            raise ConfigError(
                f"master_port={self.master_port}: must be in 1..65535; leave it unset to get a free port"
            )
        if not self.failure_timeout_s > 0:
            raise ConfigError(
                f"failure_timeout_s={self.failure_timeout_s}: must be > 0 seconds; e.g. 30"
            )
        if not self.kill_grace_s >= 0:
            raise ConfigError(f"kill_grace_s={self.kill_grace_s}: must be >= 0 seconds; e.g. 2")
