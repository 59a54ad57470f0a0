"""Every listener a multi-process run opens on one machine is on loopback: the launcher's
rendezvous store and gloo's pairs in every rank (psutil, by the run's pids)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

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


def _tree_listeners(root: psutil.Process) -> set[str]:
    found: set[str] = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            found.update(
                f"{process.name()} {connection.laddr.ip}"
                for connection in process.net_connections(kind="inet")
                if connection.status == psutil.CONN_LISTEN
            )
        except psutil.Error:
            continue
    return found


@pytest.mark.timeout(240)
@pytest.mark.parametrize("engine", ["mpi", "ddp"])
def test_every_listener_of_an_mpi_run_is_on_loopback(engine: str, tmp_path: Path) -> None:
    """parnn's own MPI launch (the ranks, their launcher, the gloo group beside MPI) listens
    on loopback only: no launcher control port on every interface."""
    pytest.importorskip("mpi4py")
    command = [
        sys.executable, "-m", "parnn.cli", "dp", "--engine", engine, "--transport", "mpi",
        "--processes", "2", "--steps", "60", "--batch-size", "16", "--quiet", "--json",
        "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    root = psutil.Process(process.pid)
    seen: set[str] = set()
    ranks_seen = 0
    while process.poll() is None:
        seen |= _tree_listeners(root)
        with contextlib.suppress(psutil.Error):
            ranks_seen = max(
                ranks_seen,
                sum("mpi_rank" in " ".join(child.cmdline()) for child in root.children(True)),
            )
        time.sleep(0.05)
    _, stderr = process.communicate()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert ranks_seen >= 2, "the ranks were never seen running"
    outside = sorted(entry for entry in seen if not _is_loopback(entry.rsplit(" ", 1)[1]))
    assert not outside, outside
