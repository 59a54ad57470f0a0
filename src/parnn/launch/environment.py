"""Where this process runs, read without importing torch: the rank variables an external
launcher (torchrun) set, and which address and interface are this machine's loopback.
A command reads them before it imports torch (to start its ranks early)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

from parnn.errors import ConfigError

__all__ = ["DistEnv", "is_loopback", "loopback_interface", "torchrun_env"]


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


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP or a host name) is this machine's loopback."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def loopback_interface() -> str | None:
    """The name of the network interface that holds 127.0.0.1 ('lo' on Linux)."""
    for name, addresses in psutil.net_if_addrs().items():
        if any(entry.address == "127.0.0.1" for entry in addresses):
            return name
    return None
