"""Weight averaging (local SGD): each rank trains its own replica on its shard and the
replicas' parameters are averaged every ``average_every`` steps, and once more at the end.

One algorithm, two transports: ``local-sgd`` all-reduces over ``torch.distributed`` (gloo)
and ``mpi`` over MPI (:mod:`parnn.data_parallel.mpi`). Parameters and floating-point
buffers (e.g. BatchNorm statistics) live in one flat float32 buffer for the whole run
(:func:`flatten_replica_`: each is a view of its part), so an average is one in-place
all-reduce of that buffer divided by N, with no copy (a model with other dtypes is packed
into a fresh buffer and back at every average instead); that is what torch's
``PeriodicModelAverager(period=k)`` does for the parameters. Optimizer state (SGD
momentum, Adam moments) stays per replica.

With ``average_every=1`` and SGD (momentum and weight decay included, both linear in the
gradient), averaging the parameters after every step equals averaging the gradients:
the run reproduces synchronous data parallelism up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn

from parnn.data_parallel.ddp import gather_logs
from parnn.data_parallel.job import TrainJob
from parnn.data_parallel.loop import StepLog, WorkerOutput, numpy_state, train_rank
from parnn.train import LoopState

__all__ = [
    "TorchTransport",
    "Transport",
    "average_replicas",
    "broadcast_replica",
    "flatten_replica_",
    "local_sgd_worker",
    "train_replica",
]


class Transport(Protocol):
    """Collectives on a flat, contiguous float32 CPU tensor, in place."""

    world_size: int

    def allreduce_sum_(self, flat: torch.Tensor) -> None: ...

    def broadcast_(self, flat: torch.Tensor, root: int) -> None: ...


class TorchTransport:
    """The default ``torch.distributed`` process group (gloo on CPU)."""

    def __init__(self) -> None:
        self.world_size = dist.get_world_size()

    def allreduce_sum_(self, flat: torch.Tensor) -> None:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)

    def broadcast_(self, flat: torch.Tensor, root: int) -> None:
        dist.broadcast(flat, src=root)


def _replica_tensors(model: nn.Module) -> list[torch.Tensor]:
    """What a replica averages: its parameters, then its floating-point buffers (the
    tensors themselves; callers work on them under ``torch.no_grad``)."""
    return [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]


def _pack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([tensor.reshape(-1).to(torch.float32) for tensor in tensors])  # (P,)


def _unpack_(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    offset = 0
    for tensor in tensors:
        count = tensor.numel()
        tensor.copy_(flat[offset : offset + count].view_as(tensor))
        offset += count


@torch.no_grad()
def flatten_replica_(model: nn.Module) -> torch.Tensor | None:
    """Move ``model``'s parameters and floating-point buffers into one flat float32 buffer
    (each becomes a view of its part, values unchanged) and return it; None, leaving the
    model as it is, when one of them is not float32. Call it before the optimizer is built
    (the optimizer then steps the views)."""
    tensors = _replica_tensors(model)
    if not tensors or any(t.dtype != torch.float32 or t.is_sparse for t in tensors):
        return None
    flat = torch.empty(sum(t.numel() for t in tensors), dtype=torch.float32)  # (P,)
    offset = 0
    for tensor in tensors:
        count = tensor.numel()
        view = flat[offset : offset + count].view_as(tensor)
        view.copy_(tensor)
        tensor.data = view  # the Parameter (or buffer) object stays; its memory moves
        offset += count
    return flat


@torch.no_grad()
def average_replicas(
    model: nn.Module, transport: Transport, flat: torch.Tensor | None = None
) -> None:
    """Replace this replica's parameters and float buffers by the mean over all ranks;
    ``flat``: the buffer :func:`flatten_replica_` returned for ``model`` (averaged in place)."""
    if flat is not None:
        transport.allreduce_sum_(flat)
        flat /= transport.world_size
        return
    tensors = _replica_tensors(model)
    packed = _pack(tensors)
    transport.allreduce_sum_(packed)
    packed /= transport.world_size
    _unpack_(packed, tensors)


@torch.no_grad()
def broadcast_replica(
    model: nn.Module, transport: Transport, root: int = 0, flat: torch.Tensor | None = None
) -> None:
    """Make every replica start from rank ``root``'s parameters (``flat``: as above)."""
    if flat is not None:
        transport.broadcast_(flat, root)
        return
    tensors = _replica_tensors(model)
    packed = _pack(tensors)
    transport.broadcast_(packed, root)
    _unpack_(packed, tensors)


def train_replica(
    rank: int,
    job: TrainJob,
    transport: Transport,
    *,
    on_average: Callable[[int, nn.Module], None] | None = None,
) -> tuple[StepLog, nn.Module]:
    """Train this rank's replica (a private copy of the job's model), averaging every
    ``average_every`` steps and at the end; returns the log and the trained replica.
    ``on_average(steps_done, model)`` runs right after each averaging (for tests)."""
    job.seed_worker(rank)
    model = job.private_model()
    flat = flatten_replica_(model)
    broadcast_replica(model, transport, flat=flat)
    optimizer = job.optimizer_factory(model.parameters())
    period = job.config.averaging_period

    def average(state: LoopState) -> None:  # a hook after every step
        if state.step % period == 0 or state.finished:
            average_replicas(model, transport, flat)
            if on_average is not None:
                on_average(state.step, model)

    log = train_rank(
        job, rank, model=model, optimizer=optimizer, world_size=transport.world_size, sync=average
    )
    return log, model


def local_sgd_worker(rank: int, world_size: int, job: TrainJob) -> WorkerOutput:
    """One local-SGD rank over the initialised ``torch.distributed`` process group."""
    transport = TorchTransport()
    dist.barrier()
    log, model = train_replica(rank, job, transport)
    logs = gather_logs(log, rank, world_size)
    return WorkerOutput(logs=logs, state=numpy_state(model) if rank == 0 else None)
