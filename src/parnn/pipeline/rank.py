"""What every rank of a pipeline run shares, whichever engine steps it (torch's schedules in
:mod:`parnn.pipeline.worker`, PipeDream's in :mod:`parnn.pipeline.asynchronous`): how a rank
starts (the data on rank 0, the same model from the same seed everywhere) and the report it
hands rank 0 at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from parnn.errors import ConfigError
from parnn.models import build_model
from parnn.pipeline.config import PipelineConfig
from parnn.train.setup import setup_training

__all__ = ["RankReport", "RankStart", "start_rank"]


@dataclass(slots=True)
class RankReport:
    """What one rank measured, gathered by rank 0 at the end."""

    rank: int
    stages: list[int]
    chunks: list[tuple[int, int, int, str, float, float]]  # StageMeter records
    waits: list[tuple[int, float, float]]  # (step, start_s, duration_s) blocked in p2p
    step_times: list[float]  # wall seconds per step on this rank
    step_starts: list[float]
    optimizer_times: list[float]
    losses: list[float]  # per step, on the rank holding the last stage
    peak_rss_bytes: int
    state: dict[str, torch.Tensor]  # this rank's trained parameters and buffers
    transport: dict[int, str]  # peer rank -> "shm" or "gloo": the path of their messages
    replica: int = 0  # hybrid: the replica this rank belongs to
    allreduces: list[tuple[int, float, float]] = field(default_factory=list)
    """Hybrid: (step, start_s, duration_s) of the gradient all-reduce along "dp"."""


@dataclass(slots=True)
class RankStart:
    """What a rank knows before its first step (every schedule's worker starts here)."""

    setup: Any  # the TrainingSetup (data) on rank 0, None on the others
    model: nn.Sequential  # the whole model, built from the same seed on every rank
    input_shape: tuple[int, ...]
    num_classes: int
    num_train: int
    steps_per_epoch: int
    total_steps: int


def start_rank(rank: int, config: PipelineConfig) -> RankStart:
    """Rank 0 loads the data and builds the model; it broadcasts the shapes, and every
    other rank builds the same model from the same seed."""
    setup = None
    if rank == 0:
        setup = setup_training(
            config.model,
            config.data,
            data_dir=config.data_dir,
            input_shape=config.input_shape,
            seed=config.train.seed,
            val_fraction=config.val_fraction,
            num_samples=config.num_samples,
        )
        model = setup.model
        header: list[Any] = [setup.input_shape, setup.num_classes, len(setup.train_data)]
    else:
        header = [None, None, None]
    dist.broadcast_object_list(header, src=0)
    input_shape, num_classes, num_train = header
    if rank != 0:
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, input_shape=input_shape, num_classes=num_classes)

    steps_per_epoch = num_train // config.train.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"batch size {config.train.batch_size} is larger than the {num_train} training samples: "
            f"use --batch-size {num_train} or less"
        )
    total_steps = (
        config.train.steps
        if config.train.steps is not None
        else config.train.epochs * steps_per_epoch
    )
    return RankStart(
        setup=setup,
        model=model,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        num_train=num_train,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
    )
