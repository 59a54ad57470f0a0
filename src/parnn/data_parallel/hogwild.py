"""Hogwild: workers update one model in shared memory, without locks (Niu et al., 2011).

The master moves the model's parameters into shared memory (``share_memory()``) and
starts N fresh worker processes (forkserver or spawn, never fork); each receives the
same storage (not a copy), builds its own optimizer over it and runs SGD on its own shard
of the data::

    shared parameters  <──── step ──── worker 0: own optimizer, shard 0, seed s+0
          ^   ^        <──── step ──── worker 1: own optimizer, shard 1, seed s+1
          └───┴──────── read (forward/backward) by every worker at any time

Each worker's update uses ``batch_size`` samples, so the workers together take as many
updates per epoch as the reference trainer; a worker may compute its gradient on
parameters that another worker changes meanwhile (stale or torn reads): that is the
algorithm, and it converges for sparse-enough updates. Gradients live in each worker's
private memory; optimizer state (SGD momentum, Adam moments) is per worker, never shared.
One intra-op thread per worker by default. The gloo process group serves only to start
the workers together and to gather their logs; no tensor of the model goes through it.
"""

from __future__ import annotations

import torch.distributed as dist

from parnn.data_parallel.ddp import gather_logs
from parnn.data_parallel.job import TrainJob
from parnn.data_parallel.loop import WorkerOutput, train_rank

__all__ = ["hogwild_worker"]


def hogwild_worker(rank: int, world_size: int, job: TrainJob) -> WorkerOutput:
    """One Hogwild worker; ``job.model`` is the master's model in shared memory."""
    job.seed_worker(rank)
    model = job.model
    optimizer = job.optimizer_factory(model.parameters())
    dist.barrier()  # start together
    log = train_rank(job, rank, model=model, optimizer=optimizer, world_size=world_size)
    return WorkerOutput(logs=gather_logs(log, rank, world_size))
