"""Running under an external launcher (``torchrun``): read its environment, use its
processes."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, TypeVar

import torch.distributed as dist

from parnn.errors import ConfigError
from parnn.launch.config import LaunchConfig, usable_cores
from parnn.launch.environment import DistEnv, torchrun_env
from parnn.launch.placement import pin_current_process, plan_cores, warn_if_oversubscribed
from parnn.launch.supervisor import launch

__all__ = ["DistEnv", "run_distributed", "torchrun_env"]

T = TypeVar("T")


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
