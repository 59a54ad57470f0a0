"""The settings of a k-fold study, and the error that says some of its jobs failed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from parnn.errors import ConfigError, ParnnError
from parnn.jobs.pool import START_METHODS
from parnn.jobs.scheduler import COST_METHODS
from parnn.launch import usable_cores
from parnn.train.config import TrainConfig, split_train_settings
from parnn.train.optim import OptimizerConfig

__all__ = [
    "DEFAULT_OPTIMIZER",
    "KFOLD_TRAIN",
    "KFOLD_TRAIN_SETTINGS",
    "TRAINER_PARAMS",
    "JobsFailedError",
    "KFoldConfig",
]

TRAINER_PARAMS = ("epochs", "steps", "save_checkpoint_frequency", "print_frequency", "warmup_steps")
DEFAULT_OPTIMIZER = OptimizerConfig(name="adam", lr=0.003)  # parnn train's default recipe
KFOLD_TRAIN: dict[str, Any] = {
    "epochs": 2,
    "batch_size": 32,
    "optimizer": DEFAULT_OPTIMIZER,
    "threads": 1,
}
"""k-fold's defaults of the shared training settings (the rest: TrainConfig's)."""
KFOLD_TRAIN_SETTINGS = (
    "batch_size", "epochs", "steps", "warmup_steps", "seed", "threads", "eval_batch_size",
    "optimizer",
)  # fmt: skip
"""The TrainConfig fields k-fold uses (the flat keywords ``AsyncKFold`` takes)."""


class JobsFailedError(ParnnError):
    """Some jobs failed (the others finished and were recorded): exit code 1."""

    exit_code = 1


@dataclass(kw_only=True, slots=True)
class KFoldConfig:
    """How to run a k-fold study."""

    folds: int = 5
    """k: the number of folds (2 <= k <= samples)."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**KFOLD_TRAIN))
    """How every job trains (the settings every engine shares): its mini-batch size, the
    passes over a fold's training part (``epochs``) or the optimizer ``steps`` of each job,
    ``warmup_steps`` of the 'warm' schedule (None: 10% of each job), ``seed`` (of the folds
    and, with model and fold, of every job), ``threads`` (intra-op threads of each worker;
    None: 1), ``eval_batch_size`` and ``optimizer``, the optimizer of every job unless
    ``run_kfold`` is given ``get_optimizer``. Each job's LR schedule comes from the list of
    LR schedules, so ``train.lr_schedule`` is not used. Defaults: :data:`KFOLD_TRAIN`."""
    save_checkpoint_frequency: int | None = None
    """Also checkpoint each job every this many steps (atomic); None or 0: by time only."""
    checkpoint_interval_s: float | None = 5.0
    """Checkpoint each job once this many seconds of it have passed since its last
    checkpoint (atomic; a job's finished record replaces its checkpoint); None or 0: by
    steps only. An interruption loses at most this much of each running job's work, and
    a job writes at most one checkpoint per interval however short its steps are."""
    print_frequency: int = 10
    """Steps between a job's progress reports (live bar, loss history)."""
    workers: int | None = None
    """Worker processes; None: usable cores // threads (``--workers auto``)."""
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
    monitor_interval_s: float = 0.5
    """CPU utilisation sampling period; 0: off."""
    cluster: Any = None
    """None: the pinned pool on this machine. Else the parallel jobs run as tasks of a Dask
    cluster: a scheduler address ('tcp://HOST:8786'), 'local[:N]' (a LocalCluster of N
    processes here), a ``distributed.Client`` or a cluster object (dask-jobqueue's
    SLURMCluster). See docs/cluster.md."""

    @classmethod
    def of(cls, *, train: TrainConfig | None = None, **settings: Any) -> KFoldConfig:
        """A config from flat keywords: the shared training settings (batch_size, epochs,
        steps, warmup_steps, seed, threads, eval_batch_size, optimizer) fill ``train`` (over
        :data:`KFOLD_TRAIN`, or over ``train`` when given), the rest are k-fold's own:
        ``KFoldConfig.of(folds=5, batch_size=32, epochs=2)``."""
        shared, own = split_train_settings(settings)
        base = train if train is not None else TrainConfig(**KFOLD_TRAIN)
        return cls(train=replace(base, **shared) if shared else base, **own)

    def replace(self, **changes: Any) -> KFoldConfig:
        """A copy with ``changes``, flat keywords as :meth:`of` takes them."""
        shared, own = split_train_settings(changes)
        return replace(self, train=replace(self.train, **shared), **own)

    @property
    def threads(self) -> int:
        """Intra-op threads of each worker (``train.threads``; None: 1)."""
        return self.train.threads or 1

    def __post_init__(self) -> None:
        if self.train.threads is None:
            self.train = replace(self.train, threads=1)
        for name in ("folds", "print_frequency", "serial_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be an integer >= 1")
        if self.folds < 2:
            raise ConfigError(f"k-fold needs k >= 2 folds, got {self.folds}; try --folds 5")
        for name in ("workers",):
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
