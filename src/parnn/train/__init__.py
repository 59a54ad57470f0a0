"""The single-process reference trainer: the yardstick every parallel engine reproduces.

Engines import the small pieces directly: :func:`batch_indices` (the data order),
:func:`make_optimizer`, :func:`make_scheduler`, :func:`make_criterion`, :func:`train_step`
and :func:`evaluate`. Same seed, same data and same thread count give bit-identical
parameters; a resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

from parnn.train.batches import batch_indices, dataset_tensors, epoch_order, num_batches
from parnn.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from parnn.train.config import TrainConfig
from parnn.train.optim import OPTIMIZERS, OptimizerConfig, make_criterion, make_optimizer
from parnn.train.schedules import SCHEDULES, make_scheduler
from parnn.train.step import EvalResult, evaluate, train_step
from parnn.train.trainer import EpochRecord, StepRecord, TrainResult, train

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "EpochRecord",
    "EvalResult",
    "OptimizerConfig",
    "StepRecord",
    "TrainConfig",
    "TrainResult",
    "batch_indices",
    "dataset_tensors",
    "epoch_order",
    "evaluate",
    "latest_checkpoint",
    "load_checkpoint",
    "make_criterion",
    "make_optimizer",
    "make_scheduler",
    "num_batches",
    "save_checkpoint",
    "train",
    "train_step",
]
