"""Running under an external launcher (``torchrun``): read its environment, use its
processes."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch.distributed as dist

from parnn.errors import ConfigError
from parnn.launch.config import LaunchConfig, usable_cores
from parnn.launch.placement import pin_current_process, plan_cores, warn_if_oversubscribed
from parnn.launch.supervisor import launch

__all__ = ["DistEnv", "run_distributed", "torchrun_env"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DistEnv:
    """Where this process sits in a job started by an external launcher (torchrun)."""

    rank: int
    """Global rank, 0..world_size-1; rank 0 is the master."""
    world_size: int
    """Ranks in the whole job (nodes x processes per node)."""
    local_rank: int
    """Rank among the processes of this machine; picks this process's cores."""
    local_world_size: int
    """Processes on this machine."""
    master_addr: str | None
    """Rendezvous host (MASTER_ADDR)."""
    master_port: int | None
    """Rendezvous port (MASTER_PORT)."""


def torchrun_env(environ: Mapping[str, str] | None = None) -> DistEnv | None:
    """The launcher's rank variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT) from ``environ`` (default ``os.environ``); None when RANK and
    WORLD_SIZE are not set, i.e. not started by torchrun, and in the workers of
    :func:`launch` (they have those variables, but a job started there is its own)."""
    env = os.environ if environ is None else environ
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return None
    if env.get("PARNN_WORKER_PID") == str(os.getpid()):
        return None

    def number(name: str, default: int | None = None) -> int:
        text = env.get(name)
        if text is None and default is not None:
            return default
        try:
            return int(text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(
                f"{name}={text!r} in the environment: must be an integer (set by torchrun); "
                "start with torchrun, or unset RANK and WORLD_SIZE to let parnn spawn processes"
            ) from None

    rank, world_size = number("RANK"), number("WORLD_SIZE")
    local_rank = number("LOCAL_RANK", rank)
    local_world_size = number("LOCAL_WORLD_SIZE", world_size)
    port = number("MASTER_PORT") if "MASTER_PORT" in env else None
    if not (0 <= rank < world_size and 0 <= local_rank < local_world_size <= world_size):
        raise ConfigError(
            f"RANK={rank} WORLD_SIZE={world_size} LOCAL_RANK={local_rank} LOCAL_WORLD_SIZE="
            f"{local_world_size}: need 0 <= RANK < WORLD_SIZE and 0 <= LOCAL_RANK < "
            "LOCAL_WORLD_SIZE <= WORLD_SIZE; start with torchrun"
        )
    return DistEnv(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        local_world_size=local_world_size,
        master_addr=env.get("MASTER_ADDR"),
        master_port=port,
    )


def run_distributed(fn: Callable[..., T], config: LaunchConfig, *args: Any) -> list[T]:
    """Under torchrun: pin this process to its local rank's cores, initialise the process
    group from the launcher's environment and return ``[fn(rank, world_size, *args)]``
    (this rank's result only; rank 0's is the authoritative one: rank 0 is the master).
    Otherwise: :func:`launch` (every rank's result, in rank order)."""
    env = torchrun_env()
    if env is None:
        return launch(fn, config, *args)
    if env.world_size != config.num_processes:
        raise ConfigError(
            f"num_processes={config.num_processes} but the launcher started WORLD_SIZE="
            f"{env.world_size} ranks; make them equal (torchrun --nnodes N --nproc-per-node K "
            "starts N*K)"
        )
    cores = config.cores or usable_cores()
    plan = plan_cores(env.local_world_size, config.threads_per_process, cores)
    if env.local_rank == 0:
        warn_if_oversubscribed(env.local_world_size, config.threads_per_process, len(cores))
    pin_current_process(plan[env.local_rank] if config.pin else None, config.threads_per_process)
    initialised_here = False
    if config.init_process_group and not dist.is_initialized():
        dist.init_process_group(
            config.backend,
            init_method="env://",
            rank=env.rank,
            world_size=env.world_size,
            timeout=datetime.timedelta(seconds=config.failure_timeout_s),
        )
        initialised_here = True
    try:
        return [fn(env.rank, env.world_size, *args)]
    finally:
        if initialised_here and dist.is_initialized():
            dist.destroy_process_group()
