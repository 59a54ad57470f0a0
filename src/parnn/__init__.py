"""parnn: train neural networks in parallel on the cores of a CPU, and measure what each
choice costs.

The public surface is the names in ``__all__``; everything else may change. Names are
imported lazily, so ``import parnn`` stays cheap for the processes parnn spawns.

    >>> import parnn
    >>> model = parnn.build_model("lenet5")
    >>> data = parnn.load_dataset("digits", input_shape=(1, 28, 28))
    >>> from parnn.train import train  # the reference trainer (parnn.train is its package)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from parnn.errors import ParnnError

if TYPE_CHECKING:
    from parnn.data import ArrayDataset, load_dataset, train_val_split
    from parnn.data_parallel.api import DistributedTester, DistributedTrainer
    from parnn.jobs import AsyncKFold
    from parnn.models import build_model, model_names
    from parnn.partition import Partition, scheme_partition
    from parnn.pipeline import PipelineConfig, PipelineResult, run_pipeline
    from parnn.train import OptimizerConfig, TrainConfig, TrainResult, evaluate

__version__ = "0.1.0"

_LAZY = {
    "ArrayDataset": "parnn.data",
    "AsyncKFold": "parnn.jobs",
    "DistributedTester": "parnn.data_parallel.api",
    "DistributedTrainer": "parnn.data_parallel.api",
    "PipelineConfig": "parnn.pipeline",
    "PipelineResult": "parnn.pipeline",
    "run_pipeline": "parnn.pipeline",
    "load_dataset": "parnn.data",
    "train_val_split": "parnn.data",
    "build_model": "parnn.models",
    "model_names": "parnn.models",
    "Partition": "parnn.partition",
    "scheme_partition": "parnn.partition",
    "OptimizerConfig": "parnn.train",
    "TrainConfig": "parnn.train",
    "TrainResult": "parnn.train",
    "evaluate": "parnn.train",
}

__all__ = [
    "ArrayDataset",
    "AsyncKFold",
    "DistributedTester",
    "DistributedTrainer",
    "PipelineConfig",
    "PipelineResult",
    "OptimizerConfig",
    "ParnnError",
    "Partition",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "build_model",
    "evaluate",
    "load_dataset",
    "model_names",
    "run_pipeline",
    "scheme_partition",
    "train_val_split",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'parnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
