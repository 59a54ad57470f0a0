"""Data parallelism on the cores of a CPU: synchronous DDP, Hogwild, and weight averaging
(local SGD over torch.distributed, and over MPI), measured against the serial reference."""

from parnn.data_parallel.config import ENGINES, DataParallelConfig, FailurePlan
from parnn.data_parallel.result import DataParallelResult, LossCurve
from parnn.data_parallel.runner import run_data_parallel

__all__ = [
    "ENGINES",
    "DataParallelConfig",
    "DataParallelResult",
    "FailurePlan",
    "LossCurve",
    "run_data_parallel",
]
