"""Every listener a multi-process run opens on one machine is on loopback: the launcher's
rendezvous store and gloo's pairs in every rank (psutil, by the run's pids)."""

from __future__ import annotations

import datetime
import ipaddress
import os

import psutil
import pytest
import torch
import torch.distributed as dist

from parnn.launch import LaunchConfig, launch


def _listening(pid: int) -> list[str]:
    return [
        connection.laddr.ip
        for connection in psutil.Process(pid).net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    ]


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _listeners_mid_run(
    rank: int, world_size: int, launcher: int, init_here: bool
) -> dict[str, list[str]]:
    if init_here:  # fn initialises its process group itself (env://)
        dist.init_process_group(
            "gloo", init_method="env://", timeout=datetime.timedelta(seconds=30)
        )
    value = torch.ones(1)
    dist.all_reduce(value)  # every pair connected
    found = {f"rank {rank}": _listening(os.getpid())}
    if rank == 0:
        found["launcher"] = _listening(launcher)
    dist.barrier()  # nobody leaves before every rank has looked
    if init_here:
        dist.destroy_process_group()
    return found


@pytest.mark.timeout(180)
@pytest.mark.parametrize("init_here", [False, True], ids=["launcher-group", "env-group"])
def test_every_listener_of_a_run_is_on_loopback(init_here: bool) -> None:
    config = LaunchConfig(num_processes=2, init_process_group=not init_here)
    results = launch(_listeners_mid_run, config, os.getpid(), init_here)
    found = {name: addresses for result in results for name, addresses in result.items()}
    assert found["launcher"], "the launcher hosts the rendezvous store"
    assert all(found[f"rank {rank}"] for rank in range(2)), found  # gloo listens in each rank
    assert all(_is_loopback(address) for addresses in found.values() for address in addresses), (
        found
    )
