"""The settings of a k-fold study, and the error that says some of its jobs failed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parnn.errors import ConfigError, ParnnError
from parnn.jobs.pool import START_METHODS
from parnn.jobs.scheduler import COST_METHODS
from parnn.launch import usable_cores
from parnn.train import OptimizerConfig

__all__ = ["DEFAULT_OPTIMIZER", "TRAINER_PARAMS", "JobsFailedError", "KFoldConfig"]

TRAINER_PARAMS = ("epochs", "steps", "save_checkpoint_frequency", "print_frequency", "warmup_steps")
DEFAULT_OPTIMIZER = OptimizerConfig(name="adam", lr=0.003)  # parnn train's default recipe


class JobsFailedError(ParnnError):
    """Some jobs failed (the others finished and were recorded): exit code 1."""

    exit_code = 1


@dataclass(kw_only=True, slots=True)
class KFoldConfig:
    """How to run a k-fold study."""

    folds: int = 5
    """k: the number of folds (2 <= k <= samples)."""
    batch_size: int = 32
    """Mini-batch size of every job."""
    epochs: int = 2
    """Passes over a fold's training part (used when ``steps`` is None)."""
    steps: int | None = None
    """Optimizer steps per job; overrides ``epochs``."""
    save_checkpoint_frequency: int | None = None
    """Also checkpoint each job every this many steps (atomic); None or 0: by time only."""
    checkpoint_interval_s: float | None = 5.0
    """Checkpoint each job once this many seconds of it have passed since its last
    checkpoint (atomic; a job's finished record replaces its checkpoint); None or 0: by
    steps only. An interruption loses at most this much of each running job's work, and
    a job writes at most one checkpoint per interval however short its steps are."""
    print_frequency: int = 10
    """Steps between a job's progress reports (live bar, loss history)."""
    warmup_steps: int | None = None
    """Warm-up steps of the 'warm' schedule; None: 10% of each job."""
    workers: int | None = None
    """Worker processes; None: usable cores // threads (``--workers auto``)."""
    threads: int = 1
    """Intra-op threads of each worker."""
    seed: int = 0
    """Seed of the folds and (with model and fold) of every job."""
    compare_serial: bool = False
    """Also run every job one after another on one worker, for the speedup."""
    serial_threads: int = 1
    """Threads of the serial run (2 = serial using both cores through intra-op threads)."""
    resume: bool = False
    """Continue the run in root_dir: finished jobs are kept, the others (re)started."""
    quiet: bool = False
    """No live view."""
    cost_method: str = "profile"
    """Cost estimate that orders the jobs: 'profile' (timed) or 'params' (a proxy)."""
    start_method: str = "forkserver"
    """How workers start: 'forkserver' or 'spawn'."""
    eval_batch_size: int = 256
    """Batch size of the held-out evaluation (does not change results)."""
    monitor_interval_s: float = 0.5
    """CPU utilisation sampling period; 0: off."""
    cluster: Any = None
    """None: the pinned pool on this machine. Else the parallel jobs run as tasks of a Dask
    cluster: a scheduler address ('tcp://HOST:8786'), 'local[:N]' (a LocalCluster of N
    processes here), a ``distributed.Client`` or a cluster object (dask-jobqueue's
    SLURMCluster). See docs/cluster.md."""

    def __post_init__(self) -> None:
        positive = ("folds", "batch_size", "epochs", "print_frequency", "threads")
        for name in (*positive, "serial_threads", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be an integer >= 1")
        if self.folds < 2:
            raise ConfigError(f"k-fold needs k >= 2 folds, got {self.folds}; try --folds 5")
        for name in ("steps", "workers", "warmup_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}={value!r}: must be an integer >= 1, or unset")
        if self.save_checkpoint_frequency is not None and self.save_checkpoint_frequency < 0:
            raise ConfigError(
                f"save_checkpoint_frequency={self.save_checkpoint_frequency}: must be >= 1 "
                "steps, or 0/None for no checkpoints"
            )
        if self.checkpoint_interval_s is not None and not self.checkpoint_interval_s >= 0:
            raise ConfigError(
                f"checkpoint_interval_s={self.checkpoint_interval_s}: must be > 0 seconds, or "
                "0/None for checkpoints by steps only"
            )
        if self.seed < 0:
            raise ConfigError(f"seed {self.seed} must be >= 0")
        if self.cost_method not in COST_METHODS:
            raise ConfigError(
                f"unknown cost method {self.cost_method!r}: choose one of {', '.join(COST_METHODS)}"
            )
        if self.start_method not in START_METHODS:
            raise ConfigError(
                f"start_method={self.start_method!r}: choose one of {', '.join(START_METHODS)}"
            )
        if self.monitor_interval_s < 0:
            raise ConfigError(f"monitor_interval_s={self.monitor_interval_s} must be >= 0")
        if self.cluster is not None:
            from parnn.jobs.dask_executor import check_cluster

            check_cluster(self.cluster)

    def resolved_workers(self) -> int:
        """``workers``, or usable cores // threads per job (at least 1)."""
        if self.workers is not None:
            return self.workers
        return max(1, len(usable_cores()) // self.threads)
