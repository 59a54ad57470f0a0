"""One worker's training loop, shared by every engine, and what a worker reports.

The engines differ only in what they plug in: the module the forward pass runs through
(a ``DistributedDataParallel`` wrapper or the plain model), how a shard's loss is weighted,
how gradient accumulation avoids syncing, and what happens after each optimizer step
(parameter averaging). The loop itself is the reference trainer's step::

    zero_grad -> for each micro-batch: forward, weighted loss, backward -> step -> LR step

Loss weighting. The criterion averages over a micro-batch of ``m`` samples; the loop
multiplies it by

- ``m * N / L`` (``global`` weighting, DDP): DDP then averages the N ranks' gradients, which
  gives the gradient of the mean loss over the whole round of ``L`` samples, i.e. exactly
  the reference trainer's gradient, even when the last round is not divisible by N;
- ``m / n`` (``local`` weighting): the mean over the rank's own ``n`` samples, the gradient
  each independent replica (Hogwild, local SGD, serial) follows.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from parnn.data_parallel.config import FailurePlan
from parnn.data_parallel.shards import StepShard

__all__ = [
    "StepBoard",
    "StepLog",
    "WorkerOutput",
    "load_numpy_state",
    "numpy_state",
    "peak_rss_mib",
    "run_loop",
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


class StepBoard:
    """Steps done by each rank, in a small file mapped by every process (spawned, MPI or
    otherwise), so that the master can draw a progress bar while the workers train."""

    def __init__(self, path: str | Path, num_ranks: int) -> None:
        self.path = str(path)
        self.num_ranks = num_ranks
        self._tensor: torch.Tensor | None = None

    @classmethod
    def create(cls, path: str | Path, num_ranks: int) -> StepBoard:
        Path(path).write_bytes(bytes(8 * num_ranks))
        return cls(path, num_ranks)

    def _view(self) -> torch.Tensor:
        if self._tensor is None:
            self._tensor = torch.from_file(
                self.path, shared=True, size=self.num_ranks, dtype=torch.int64
            )
        return self._tensor

    def set(self, rank: int, steps_done: int) -> None:
        self._view()[rank] = steps_done

    def total(self) -> int:
        return int(self._view().sum())

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "num_ranks": self.num_ranks}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.num_ranks = state["num_ranks"]
        self._tensor = None


def peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _inject_failure(plan: FailurePlan, rank: int, step: int) -> None:
    if plan.kind == "exit":
        os._exit(17)  # dies without a traceback, as a segfaulting or OOM-killed worker would
    raise RuntimeError(f"injected failure on rank {rank} at step {step} (test hook)")


def _accumulate(
    *,
    model: nn.Module,
    criterion: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    shard: StepShard,
    accumulate_steps: int,
    world_size: int,
    global_weighting: bool,
    no_sync: Callable[[], AbstractContextManager[Any]] | None,
) -> tuple[float, int]:
    """Forward and backward of one rank's share of a step; returns (loss sum, samples)."""
    micro = [idx for idx in torch.tensor_split(shard.indices, accumulate_steps) if idx.numel()]
    num_samples = int(shard.indices.numel())
    zero_weight = False
    if not micro:
        if not global_weighting:
            return 0.0, 0
        # An empty shard under DDP still joins the gradient all-reduce: a forward of the
        # (fewer than N) round samples with weight 0 adds a zero gradient.
        micro = [shard.round_indices]
        zero_weight = True
    loss_sum = 0.0
    for position, idx in enumerate(micro):
        last = position == len(micro) - 1
        context = no_sync() if (no_sync is not None and not last) else nullcontext()
        with context:
            loss = criterion(model(inputs[idx]), targets[idx])  # mean over the micro-batch
            size = int(idx.numel())
            if zero_weight:
                scale = 0.0
            elif global_weighting:
                scale = size * world_size / shard.round_samples
            else:
                scale = size / num_samples
            (loss * scale if scale != 1.0 else loss).backward()
        if not zero_weight:
            loss_sum += float(loss.detach()) * size
    return loss_sum, num_samples


def run_loop(
    *,
    rank: int,
    world_size: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    criterion: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    shards: Iterable[StepShard],
    accumulate_steps: int = 1,
    global_weighting: bool = False,
    no_sync: Callable[[], AbstractContextManager[Any]] | None = None,
    after_step: Callable[[int], None] | None = None,
    fail_at: FailurePlan | None = None,
    board: StepBoard | None = None,
) -> StepLog:
    """Train over ``shards``; ``after_step(steps_done)`` runs after every update (its time
    counts as ``sync_s``)."""
    model.train()
    log = StepLog(rank=rank, start_s=time.perf_counter(), pid=os.getpid())
    for shard in shards:
        if fail_at is not None and fail_at.rank == rank and fail_at.step == shard.step:
            _inject_failure(fail_at, rank, shard.step)
        optimizer.zero_grad(set_to_none=True)
        loss_sum, num_samples = _accumulate(
            model=model,
            criterion=criterion,
            inputs=inputs,
            targets=targets,
            shard=shard,
            accumulate_steps=accumulate_steps,
            world_size=world_size,
            global_weighting=global_weighting,
            no_sync=no_sync,
        )
        optimizer.step()  # a parameter without a gradient (an empty shard) is left alone
        if scheduler is not None:
            scheduler.step()
        if after_step is not None:
            sync_start = time.perf_counter()
            after_step(shard.step + 1)
            log.sync_s += time.perf_counter() - sync_start
        log.record(time.perf_counter(), loss_sum, num_samples)
        if board is not None:
            board.set(rank, shard.step + 1)
    log.end_s = time.perf_counter()
    log.peak_rss_mib = peak_rss_mib()
    return log
