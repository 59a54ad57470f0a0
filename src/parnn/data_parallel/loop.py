"""One worker's run on the one training loop (:func:`parnn.train.train_loop`), and what a
worker reports.

The engines differ only in what they plug in: the module the step runs through (a
``DistributedDataParallel`` wrapper, the plain model, or the model in shared memory), how
a shard's loss is weighted (``global`` for DDP, ``local`` otherwise; see
:mod:`parnn.train.loop`), DDP's ``no_sync`` for gradient accumulation, and hooks after each
optimizer step (parameter averaging). :func:`train_rank` adds the hooks every engine has:
failure injection (:class:`FailAt`) and the step log and progress board
(:class:`RecordSteps`).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from parnn.data_parallel.config import FailurePlan
from parnn.data_parallel.job import StepBoard, TrainJob
from parnn.train import Batch, GradientStep, Hook, LoopState, StepOutcome, train_loop

__all__ = [
    "FailAt",
    "RecordSteps",
    "StepLog",
    "TimedSync",
    "WorkerOutput",
    "load_numpy_state",
    "numpy_state",
    "peak_rss_mib",
    "train_rank",
]


@dataclass(slots=True)
class StepLog:
    """What one rank did, step by step (times are ``time.perf_counter`` seconds, a clock
    shared by the processes of one machine)."""

    rank: int
    start_s: float
    end_s: float = 0.0
    step_end_s: list[float] = field(default_factory=list)
    """When each of this rank's steps ended (after the update and any averaging)."""
    loss_sums: list[float] = field(default_factory=list)
    """Sum of the per-sample losses of the rank's shard at each step (before the update)."""
    samples: list[int] = field(default_factory=list)
    """Samples of the rank's shard at each step."""
    sync_s: float = 0.0
    """Seconds spent averaging parameters (local-sgd, mpi); DDP overlaps its all-reduce
    with the backward pass, so it is not counted apart."""
    peak_rss_mib: float = 0.0
    """Peak resident memory of the worker process."""
    pid: int = 0

    def record(self, end_s: float, loss_sum: float, samples: int) -> None:
        self.step_end_s.append(end_s)
        self.loss_sums.append(loss_sum)
        self.samples.append(samples)

    @property
    def train_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(slots=True)
class WorkerOutput:
    """A worker's answer: every rank's log (rank 0 gathers them in the synchronous
    engines; otherwise its own only) and rank 0's final parameters."""

    logs: list[StepLog]
    state: dict[str, np.ndarray] | None = None
    """As numpy arrays: they pickle by value, so the worker may exit before the master
    reads them (torch tensors would travel as handles to the worker's shared memory)."""


def numpy_state(model: nn.Module) -> dict[str, np.ndarray]:
    return {name: value.detach().cpu().numpy().copy() for name, value in model.state_dict().items()}


def load_numpy_state(model: nn.Module, state: dict[str, np.ndarray]) -> None:
    model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})


def peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class FailAt(Hook):
    """Failure injection for tests: ``plan.rank`` fails when it starts step ``plan.step``."""

    def __init__(self, plan: FailurePlan, rank: int) -> None:
        self.plan = plan
        self.rank = rank

    def before_step(self, state: LoopState, batch: Batch) -> None:
        if self.plan.rank == self.rank and self.plan.step == batch.step:
            if self.plan.kind == "exit":
                os._exit(17)  # dies without a traceback, as a segfaulting or OOM-killed worker
            raise RuntimeError(
                f"injected failure on rank {self.rank} at step {batch.step} (test hook)"
            )


class RecordSteps(Hook):
    """Each step's end time, loss sum and samples into ``log``; steps done onto ``board``.
    Runs after the other hooks, so that a step ends after its averaging."""

    def __init__(self, log: StepLog, board: StepBoard | None) -> None:
        self.log = log
        self.board = board

    def after_step(self, state: LoopState, batch: Batch, outcome: StepOutcome) -> None:
        self.log.record(time.perf_counter(), outcome.loss_sum, outcome.samples)
        if self.board is not None:
            self.board.set(self.log.rank, batch.step + 1)


class TimedSync(Hook):
    """Runs ``sync(state)`` after each step and counts its time as the log's ``sync_s``
    (parameter averaging in local SGD and MPI)."""

    def __init__(self, sync: Callable[[LoopState], None], log: StepLog) -> None:
        self.sync = sync
        self.log = log

    def after_step(self, state: LoopState, batch: Batch, outcome: StepOutcome) -> None:
        started = time.perf_counter()
        self.sync(state)
        self.log.sync_s += time.perf_counter() - started


def train_rank(
    job: TrainJob,
    rank: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    world_size: int,
    weighting: str = "local",
    no_sync: Callable[[], AbstractContextManager[Any]] | None = None,
    sync: Callable[[LoopState], None] | None = None,
) -> StepLog:
    """Train ``rank``'s shards of ``job`` on the one loop through ``model`` (the module the
    forward pass runs through); ``sync(state)`` runs after every update (its time counts
    as ``sync_s``)."""
    scheduler = job.scheduler_factory(optimizer) if job.scheduler_factory is not None else None
    log = StepLog(rank=rank, start_s=time.perf_counter(), pid=os.getpid())
    hooks: list[Hook] = []
    if job.config.fail_at is not None:
        hooks.append(FailAt(job.config.fail_at, rank))
    if sync is not None:
        hooks.append(TimedSync(sync, log))
    hooks.append(RecordSteps(log, job.board))
    model.train()
    train_loop(
        GradientStep(
            model,
            optimizer,
            job.criterion,
            job.inputs,
            job.targets,
            accumulate_steps=job.config.accumulate_steps,
            weighting=weighting,
            world_size=world_size,
            no_sync=no_sync,
        ),
        job.shards(rank),
        optimizer=optimizer,
        scheduler=scheduler,
        state=LoopState(total_steps=job.total_steps),
        hooks=hooks,
    )
    log.end_s = time.perf_counter()
    log.peak_rss_mib = peak_rss_mib()
    return log
