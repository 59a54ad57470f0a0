"""Synchronous data parallelism with ``DistributedDataParallel`` over gloo, and the serial
baseline (the same loop in one process).

Each rank holds a full replica. DDP broadcasts rank 0's parameters when it wraps the
model, then all-reduces (averages) the gradients in buckets while the backward pass runs,
so every rank applies the same update. With the global batch split over the ranks and the
loss weighted by ``m * N / L`` (see :mod:`parnn.train.loop`), the gradient is the
reference trainer's, and N ranks reproduce its parameters step for step.

Uneven inputs. Every rank takes part in every step (a rank whose shard of a small last
round is empty adds a zero gradient), so the collectives always match and ``Join`` is not
needed; the weighting keeps the last, uneven round exact. ``drop_last`` drops it instead.

Gradient accumulation: the first ``accumulate_steps - 1`` micro-batches run under
``no_sync()`` (gradients accumulate locally); the last one triggers the all-reduce.

Transport. Over gloo DDP all-reduces each bucket with the process group. Over MPI
(``--transport mpi``, ranks started by ``mpiexec``) a communication hook,
:func:`mpi_allreduce_hook`, sums the bucket's flat gradient buffer in place with MPI's
``Allreduce`` on the tensor's own memory and divides it by N; the gloo group is still
there for DDP's set-up broadcast and parnn's metadata, never for gradients::

    backward ──> bucket ready ──> hook: MPI Allreduce(IN_PLACE, buffer) ; buffer /= N
                                        └─> completed Future(buffer) ──> grads
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from parnn.data_parallel.job import TrainJob
from parnn.data_parallel.loop import StepLog, WorkerOutput, numpy_state, train_rank

__all__ = ["ddp_worker", "gather_logs", "mpi_allreduce_hook", "serial_worker", "train_ddp"]


def gather_logs(log: StepLog, rank: int, world_size: int) -> list[StepLog]:
    """Every rank's log on rank 0 (an empty list elsewhere); metadata only, a few KiB."""
    gathered: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(log, gathered, dst=0)
    return [entry for entry in gathered if entry is not None] if gathered is not None else []


def serial_worker(rank: int, world_size: int, job: TrainJob) -> WorkerOutput:
    """The one loop with the plain step in one process (the threads the launcher gave it)."""
    job.seed_worker(rank)
    model = job.private_model()
    optimizer = job.optimizer_factory(model.parameters())
    log = train_rank(job, rank, model=model, optimizer=optimizer, world_size=1)
    return WorkerOutput(logs=[log], state=numpy_state(model))


def mpi_allreduce_hook(comm: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: average the bucket's gradients over MPI communicator
    ``comm`` (mpi4py), in place and without a copy; returns a completed future."""
    from mpi4py import MPI

    buffer = bucket.buffer()  # (P,) flat, contiguous; float32 on CPU
    comm.Allreduce(MPI.IN_PLACE, buffer.numpy(), op=MPI.SUM)  # numpy view of its memory
    buffer.div_(comm.Get_size())
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(buffer)
    return future


# DDP checks a hook's annotations against the real types; this module's annotations are
# strings (``from __future__ import annotations``), so give it the objects.
mpi_allreduce_hook.__annotations__.update(
    bucket=dist.GradBucket, comm=Any, **{"return": torch.futures.Future[torch.Tensor]}
)


def train_ddp(
    rank: int, world_size: int, job: TrainJob, *, mpi_comm: Any | None = None
) -> tuple[StepLog, nn.Module]:
    """Train one DDP rank (the gloo process group is initialised); with ``mpi_comm`` the
    gradients travel over MPI (:func:`mpi_allreduce_hook`). Returns the log and the
    trained (unwrapped) model."""
    job.seed_worker(rank)
    model = job.private_model()
    # Broadcasts rank 0's parameters and buffers. The gradients are views into DDP's
    # buckets, so the all-reduce works on them in place: no copy into the bucket and back.
    ddp_model = DistributedDataParallel(model, gradient_as_bucket_view=True)
    if mpi_comm is not None:
        ddp_model.register_comm_hook(mpi_comm, mpi_allreduce_hook)
    optimizer = job.optimizer_factory(ddp_model.parameters())
    dist.barrier()  # start the clock together
    log = train_rank(
        job,
        rank,
        model=ddp_model,
        optimizer=optimizer,
        world_size=world_size,
        weighting="global",
        no_sync=ddp_model.no_sync,
    )
    return log, model


def ddp_worker(rank: int, world_size: int, job: TrainJob) -> WorkerOutput:
    """One DDP rank over gloo; the process group is already initialised."""
    log, model = train_ddp(rank, world_size, job)
    logs = gather_logs(log, rank, world_size)
    return WorkerOutput(logs=logs, state=numpy_state(model) if rank == 0 else None)
