"""Which samples each rank takes at each step: the reference trainer's data order, cut.

Step ``t`` of the run is one *round*: the reference mini-batch of
:func:`parnn.train.batch_stream` with batch ``round_size`` (= ``batch_size`` for the
synchronous engines), split into ``num_processes`` contiguous shards whose sizes differ by
at most one (a :class:`parnn.train.Batch` per rank and step: ``indices`` is the rank's
shard, ``round_indices`` the whole round). A last, small round (L < N) leaves some ranks
an empty shard: they still take part in the step (see the engines).
"""

from __future__ import annotations

from collections.abc import Iterator

from parnn.data_parallel.config import DataParallelConfig
from parnn.errors import ConfigError
from parnn.train import Batch, batch_stream, num_batches

__all__ = ["check_num_samples", "rank_shards", "steps_per_epoch", "total_steps"]


def steps_per_epoch(num_samples: int, config: DataParallelConfig) -> int:
    return num_batches(num_samples, config.round_size, drop_last=config.train.drop_last)


def total_steps(num_samples: int, config: DataParallelConfig) -> int:
    """``steps`` when given, else ``epochs`` x rounds per epoch."""
    if config.train.steps is not None:
        return config.train.steps
    return config.train.epochs * steps_per_epoch(num_samples, config)


def check_num_samples(num_samples: int, config: DataParallelConfig) -> None:
    """Every rank must get at least one sample per epoch."""
    if num_samples < config.num_ranks:
        raise ConfigError(
            f"{num_samples} training samples cannot feed {config.num_ranks} processes: "
            f"use at most {num_samples} processes or more data"
        )
    steps_per_epoch(num_samples, config)  # raises when drop_last leaves no round


def rank_shards(num_samples: int, config: DataParallelConfig, rank: int) -> Iterator[Batch]:
    """The shards of ``rank`` for every step of the run, in order."""
    return batch_stream(
        num_samples,
        config.round_size,
        seed=config.train.seed,
        total_steps=total_steps(num_samples, config),
        drop_last=config.train.drop_last,
        part=rank,
        num_parts=config.num_ranks,
    )
