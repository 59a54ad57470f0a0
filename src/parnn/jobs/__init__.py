"""Task parallelism: independent training jobs (K-fold x models x LR schedules) on a pool
of pinned single-thread workers, longest first, checkpointed and resumable.

    >>> from parnn.jobs import AsyncKFold  # doctest: +SKIP
    >>> results = AsyncKFold(5, dataset, "runs/kfold")(["lenet5"], ["cosine"])  # doctest: +SKIP

Names are imported lazily, so that a worker that only needs :mod:`parnn.jobs.fold_job`
does not import the orchestration (monitor, plots).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parnn.jobs.config import JobsFailedError, KFoldConfig
    from parnn.jobs.kfold import AsyncKFold, run_kfold
    from parnn.jobs.pool import PoolConfig, PoolEvent, WorkerPool
    from parnn.jobs.results import KFoldResults
    from parnn.jobs.spec import JobResult, JobSpec

# The fork server imports these once, so that no worker pays for them inside a job:
# torch, the models and the trainer, and torch._dynamo, which a torch optimizer imports
# on its first use (1-3 s). `parnn kfold` starts the server with them at once.
WORKER_PRELOAD = ("parnn.jobs.fold_job", "torch._dynamo")

_LAZY = {
    "AsyncKFold": "parnn.jobs.kfold",
    "JobsFailedError": "parnn.jobs.config",
    "KFoldConfig": "parnn.jobs.config",
    "run_kfold": "parnn.jobs.kfold",
    "PoolConfig": "parnn.jobs.pool",
    "PoolEvent": "parnn.jobs.pool",
    "WorkerPool": "parnn.jobs.pool",
    "KFoldResults": "parnn.jobs.results",
    "JobResult": "parnn.jobs.spec",
    "JobSpec": "parnn.jobs.spec",
}

__all__ = [
    "AsyncKFold",
    "JobResult",
    "JobSpec",
    "JobsFailedError",
    "KFoldConfig",
    "KFoldResults",
    "PoolConfig",
    "PoolEvent",
    "WORKER_PRELOAD",
    "WorkerPool",
    "run_kfold",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'parnn.jobs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
