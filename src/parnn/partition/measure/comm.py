"""Measure the communication model: ping-pong tensors of several sizes between two pinned
processes and fit :class:`~parnn.partition.comm.CommModel` (the value and its fit live in
:mod:`parnn.partition.comm`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from parnn.errors import ConfigError
from parnn.partition.comm import DEFAULT_SIZES_BYTES, CommModel, fit_comm_model

__all__ = ["measure_comm_model"]


def _round_trips_per_block(size: int) -> int:
    # Enough round trips that a timed block moves ~4 MiB: small messages are timed in bulk.
    return max(1, min(64, (4 << 20) // max(size, 1)))


def _ping_pong(
    rank: int,
    world_size: int,
    sizes_bytes: Sequence[int],
    warmup: int,
    repeats: int,
    transport: str = "gloo",
) -> list[float]:
    """Runs in each of the two processes: median one-way seconds per size (rank 0's view).

    Per size: ``warmup`` untimed blocks, then ``repeats`` timed blocks of round trips; a
    block's one-way time is its duration over twice its round trips."""
    import torch
    import torch.distributed as dist

    from parnn.transport import new_transport_group, transport_geometry

    largest = (max(sizes_bytes) // 4,)
    group = new_transport_group(transport, **transport_geometry([largest]))
    peer = 1 - rank
    medians: list[float] = []
    for size in sizes_bytes:
        buffer = torch.zeros(max(size // 4, 1), dtype=torch.float32)  # (size / 4,) float32
        trips = _round_trips_per_block(size)
        one_way: list[float] = []
        for block in range(warmup + repeats):
            dist.barrier()
            start = time.perf_counter()
            for _ in range(trips):
                if rank == 0:
                    dist.send(buffer, dst=peer, group=group)
                    dist.recv(buffer, src=peer, group=group)
                else:
                    dist.recv(buffer, src=peer, group=group)
                    dist.send(buffer, dst=peer, group=group)
            if block >= warmup:
                one_way.append((time.perf_counter() - start) / (2 * trips))
        medians.append(statistics.median(one_way))
    return medians


def measure_comm_model(
    *,
    sizes_bytes: Sequence[int] = DEFAULT_SIZES_BYTES,
    warmup: int = 3,
    repeats: int = 11,
    backend: str = "gloo",
    transport: str = "gloo",
    threads: int = 1,
) -> CommModel:
    """Measure one-way transfer times between two pinned processes and fit the model.
    ``transport``: 'gloo', 'shm' or 'auto' (shm where this host allows it).

    Starts two processes with :func:`parnn.launch.launch` (one core and ``threads``
    intra-op threads each), ping-pongs a float32 tensor of every size ``warmup + repeats``
    times (small sizes in blocks of many round trips) and keeps the median one-way time.
    Takes a few seconds plus process start-up.
    """
    from parnn.launch import LaunchConfig, launch

    if len(set(sizes_bytes)) < 2:
        raise ConfigError("measure at least two distinct message sizes")
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    from parnn.transport import local_transport

    transport = local_transport(transport)
    config = LaunchConfig(num_processes=2, backend=backend, threads_per_process=threads)
    results = launch(_ping_pong, config, list(sizes_bytes), warmup, repeats, transport)
    times = results[0]
    return fit_comm_model(
        [max(s // 4, 1) * 4 for s in sizes_bytes], times, backend=backend, transport=transport
    )
