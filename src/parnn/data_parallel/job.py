"""What every worker receives: the model, the data, the settings, how to build its
optimizer and LR schedule, and the progress board it marks its steps on. Everything here
pickles (workers are fresh processes)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from parnn.data_parallel.config import DataParallelConfig
from parnn.data_parallel.shards import rank_shards, total_steps
from parnn.train import Batch, OptimizerConfig, make_optimizer, make_scheduler

__all__ = ["OptimizerFactory", "ScheduleFactory", "StepBoard", "TrainJob"]

OptimizerFactoryType = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]
SchedulerFactoryType = Callable[[torch.optim.Optimizer], Any]


@dataclass(frozen=True, slots=True)
class OptimizerFactory:
    """``factory(params)`` builds the optimizer ``config`` names (picklable)."""

    config: OptimizerConfig

    def __call__(self, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        return make_optimizer(params, self.config)


@dataclass(frozen=True, slots=True)
class ScheduleFactory:
    """``factory(optimizer)`` builds the named LR schedule over ``total_steps`` (picklable)."""

    name: str
    total_steps: int
    warmup_steps: int | None = None

    def __call__(self, optimizer: torch.optim.Optimizer) -> Any:
        return make_scheduler(
            optimizer, self.name, total_steps=self.total_steps, warmup_steps=self.warmup_steps
        )


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


@dataclass(slots=True)
class TrainJob:
    """One data-parallel training run, as handed to each worker."""

    config: DataParallelConfig
    model: nn.Module
    inputs: torch.Tensor
    """Training inputs (N, C, H, W), float32; shared memory where the engine allows."""
    targets: torch.Tensor
    """Training labels (N,), int64."""
    criterion: nn.Module
    """Loss averaged over a mini-batch (``make_criterion()`` by default)."""
    optimizer_factory: OptimizerFactoryType
    scheduler_factory: SchedulerFactoryType | None
    board: StepBoard | None = None

    @property
    def num_samples(self) -> int:
        return int(self.targets.shape[0])

    @property
    def total_steps(self) -> int:
        return total_steps(self.num_samples, self.config)

    def shards(self, rank: int) -> Iterator[Batch]:
        return rank_shards(self.num_samples, self.config, rank)

    def private_model(self) -> nn.Module:
        """A copy of the model in this worker's own memory. A module sent to a new
        process arrives in shared memory (torch's pickling of CPU tensors), so without
        the copy every rank would update one set of parameters, as Hogwild does."""
        return copy.deepcopy(self.model)

    def seed_worker(self, rank: int) -> None:
        """Distinct RNG streams per worker (dropout, augmentation); the data order is fixed."""
        torch.manual_seed(self.config.train.seed + rank)
