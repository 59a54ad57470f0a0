"""Which samples each rank takes at each step: the reference trainer's data order, cut.

Step ``t`` of the run is one *round*: the reference mini-batch order of
:func:`parnn.train.batch_indices` with batch ``round_size`` (= ``batch_size`` for the
synchronous engines), split into ``num_processes`` contiguous shards whose sizes differ by
at most one::

    round t  (L samples, L = round_size except the last round of an epoch)
    |---- rank 0 ----|---- rank 1 ----| ... |---- rank N-1 ----|
        ceil(L/N)        ceil(L/N)              floor(L/N)

With L divisible by N every shard has L/N samples. A last, small round (L < N) leaves some
ranks an empty shard: they still take part in the step (see the engines).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from parnn.data_parallel.config import DataParallelConfig
from parnn.errors import ConfigError
from parnn.train import batch_indices, num_batches

__all__ = ["StepShard", "check_num_samples", "rank_shards", "steps_per_epoch", "total_steps"]


@dataclass(frozen=True, slots=True)
class StepShard:
    """The samples one rank takes at one step."""

    step: int
    """0-based step of the run."""
    epoch: int
    round_indices: torch.Tensor
    """All samples of the round, int64 (L,): what the ranks take together."""
    indices: torch.Tensor
    """This rank's shard of the round, int64 (n,), 0 <= n <= ceil(L / N)."""

    @property
    def round_samples(self) -> int:
        return int(self.round_indices.numel())


def steps_per_epoch(num_samples: int, config: DataParallelConfig) -> int:
    return num_batches(num_samples, config.round_size, drop_last=config.drop_last)


def total_steps(num_samples: int, config: DataParallelConfig) -> int:
    """``steps`` when given, else ``epochs`` x rounds per epoch."""
    if config.steps is not None:
        return config.steps
    return config.epochs * steps_per_epoch(num_samples, config)


def check_num_samples(num_samples: int, config: DataParallelConfig) -> None:
    """Every rank must get at least one sample per epoch."""
    if num_samples < config.num_ranks:
        raise ConfigError(
            f"{num_samples} training samples cannot feed {config.num_ranks} processes: "
            f"use at most {num_samples} processes or more data"
        )
    steps_per_epoch(num_samples, config)  # raises when drop_last leaves no round


def rank_shards(num_samples: int, config: DataParallelConfig, rank: int) -> Iterator[StepShard]:
    """The shards of ``rank`` for every step of the run, in order."""
    steps = total_steps(num_samples, config)
    step = 0
    epoch = 0
    while step < steps:
        rounds = batch_indices(
            num_samples,
            config.round_size,
            seed=config.seed,
            epoch=epoch,
            drop_last=config.drop_last,
        )
        for round_indices in rounds:
            if step >= steps:
                return
            shard = torch.tensor_split(round_indices, config.num_ranks)[rank]
            yield StepShard(step=step, epoch=epoch, round_indices=round_indices, indices=shard)
            step += 1
        epoch += 1
