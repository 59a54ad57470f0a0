"""The single-process reference trainer: the yardstick every parallel engine reproduces,
and the one training loop every engine runs (:func:`train_loop`, :mod:`parnn.train.loop`).

Engines import the small pieces directly: :func:`batch_stream` (the data order, step by
step), :class:`GradientStep`, the loop's hooks, :func:`make_optimizer`,
:func:`make_scheduler`, :func:`make_criterion` and :func:`evaluate`. Same seed, same data and same thread count give bit-identical
parameters; a resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parnn.train.batches import (
        Batch,
        batch_indices,
        batch_stream,
        dataset_tensors,
        epoch_order,
        num_batches,
    )
    from parnn.train.checkpoint import (
        latest_checkpoint,
        load_checkpoint,
        restore_training_state,
        save_checkpoint,
        training_state,
    )
    from parnn.train.config import TrainConfig
    from parnn.train.loop import (
        AfterStep,
        CheckpointEvery,
        EpochEnd,
        GradientStep,
        Hook,
        LoopState,
        StepOutcome,
        train_loop,
    )
    from parnn.train.optim import OPTIMIZERS, OptimizerConfig, make_criterion, make_optimizer
    from parnn.train.schedules import SCHEDULES, make_scheduler
    from parnn.train.step import EvalResult, evaluate, train_step
    from parnn.train.trainer import EpochRecord, StepRecord, TrainResult, train

# Names are imported lazily, so that ``SCHEDULES`` (a CLI choice) costs no torch import.
_LAZY = {
    "Batch": "parnn.train.batches",
    "batch_stream": "parnn.train.batches",
    "batch_indices": "parnn.train.batches",
    "dataset_tensors": "parnn.train.batches",
    "epoch_order": "parnn.train.batches",
    "num_batches": "parnn.train.batches",
    "latest_checkpoint": "parnn.train.checkpoint",
    "load_checkpoint": "parnn.train.checkpoint",
    "save_checkpoint": "parnn.train.checkpoint",
    "restore_training_state": "parnn.train.checkpoint",
    "training_state": "parnn.train.checkpoint",
    "AfterStep": "parnn.train.loop",
    "CheckpointEvery": "parnn.train.loop",
    "EpochEnd": "parnn.train.loop",
    "GradientStep": "parnn.train.loop",
    "Hook": "parnn.train.loop",
    "LoopState": "parnn.train.loop",
    "StepOutcome": "parnn.train.loop",
    "train_loop": "parnn.train.loop",
    "TrainConfig": "parnn.train.config",
    "OPTIMIZERS": "parnn.train.optim",
    "OptimizerConfig": "parnn.train.optim",
    "make_criterion": "parnn.train.optim",
    "make_optimizer": "parnn.train.optim",
    "SCHEDULES": "parnn.train.schedules",
    "make_scheduler": "parnn.train.schedules",
    "EvalResult": "parnn.train.step",
    "evaluate": "parnn.train.step",
    "train_step": "parnn.train.step",
    "EpochRecord": "parnn.train.trainer",
    "StepRecord": "parnn.train.trainer",
    "TrainResult": "parnn.train.trainer",
    "train": "parnn.train.trainer",
}

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "AfterStep",
    "Batch",
    "CheckpointEvery",
    "EpochEnd",
    "EpochRecord",
    "EvalResult",
    "GradientStep",
    "Hook",
    "LoopState",
    "OptimizerConfig",
    "StepOutcome",
    "StepRecord",
    "TrainConfig",
    "TrainResult",
    "batch_indices",
    "batch_stream",
    "dataset_tensors",
    "epoch_order",
    "evaluate",
    "latest_checkpoint",
    "load_checkpoint",
    "make_criterion",
    "make_optimizer",
    "make_scheduler",
    "num_batches",
    "restore_training_state",
    "save_checkpoint",
    "train",
    "train_loop",
    "train_step",
    "training_state",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'parnn.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
