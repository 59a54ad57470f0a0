"""Data parallelism on the cores of a CPU: synchronous DDP, Hogwild, and weight averaging
(local SGD over torch.distributed, and over MPI), measured against the serial reference."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parnn.data_parallel.config import ENGINES, DataParallelConfig, FailurePlan
    from parnn.data_parallel.result import DataParallelResult, LossCurve
    from parnn.data_parallel.runner import run_data_parallel

# Names are imported lazily: the CLI reads ENGINES (and --help) without importing torch.
_LAZY = {
    "ENGINES": "parnn.data_parallel.config",
    "DataParallelConfig": "parnn.data_parallel.config",
    "FailurePlan": "parnn.data_parallel.config",
    "DataParallelResult": "parnn.data_parallel.result",
    "LossCurve": "parnn.data_parallel.result",
    "run_data_parallel": "parnn.data_parallel.runner",
}

__all__ = [
    "ENGINES",
    "DataParallelConfig",
    "DataParallelResult",
    "FailurePlan",
    "LossCurve",
    "run_data_parallel",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'parnn.data_parallel' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
