"""The settings of one data-parallel run: which engine, how many processes, what a step is.

A *step* is one optimizer update. ``batch_size`` is the batch of one step:

- synchronous engines (``ddp``, ``local-sgd``, ``mpi``): the global batch, split evenly
  over the ranks (``batch_size / num_ranks`` samples each), so that N ranks take the
  same steps as the reference trainer with the same batch size;
- ``hogwild``: each worker's update uses ``batch_size`` samples of its own shard, so the
  workers together take as many updates per epoch as the reference trainer;
- ``serial``: one process, the reference trainer's loop (the baseline).

``per_process_batch`` makes ``batch_size`` the batch of each rank instead (global batch
``batch_size x num_ranks``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

from parnn.errors import ConfigError, ParnnWarning
from parnn.train.config import TrainConfig, split_train_settings
from parnn.train.optim import OptimizerConfig

__all__ = [
    "AVERAGING_ENGINES",
    "COMMUNICATING_ENGINES",
    "DATA_PARALLEL_TRAIN",
    "ENGINES",
    "ENGINE_DEFAULTS",
    "RANK_PRELOAD",
    "SYNCHRONOUS_ENGINES",
    "TRANSPORTS",
    "DataParallelConfig",
    "FailurePlan",
    "engine_optimizer",
]

ENGINES = ("serial", "ddp", "hogwild", "local-sgd", "mpi")
SYNCHRONOUS_ENGINES = ("ddp", "local-sgd", "mpi")
"""Engines whose ranks take every step together (a global batch split over the ranks)."""
AVERAGING_ENGINES = ("local-sgd", "mpi")
"""Engines that average parameters every ``average_every`` steps instead of gradients."""
FAILURE_KINDS = ("raise", "exit")
TRANSPORTS = ("auto", "gloo", "mpi")
"""How the ranks of ddp and local-sgd talk: ``gloo`` (torch.distributed), ``mpi`` (mpi4py
under mpiexec) or ``auto`` (mpi where it can be used, else gloo, saying why)."""
COMMUNICATING_ENGINES = ("ddp", "local-sgd", "mpi")
"""Engines whose ranks exchange tensors, so the transport matters."""
RANK_PRELOAD: dict[str, tuple[str, ...]] = {"ddp": ("torch._dynamo",)}
"""Modules an engine's ranks import late, beyond the engine's own: DistributedDataParallel's
constructor imports ``torch._dynamo`` (~1 s of CPU, as much as torch). Ranks that start
before their job (the fork server, MPI ranks started ahead) import them while they wait."""

ENGINE_DEFAULTS: dict[str, dict[str, float]] = {
    "serial": {"lr": 0.05, "momentum": 0.9},
    "ddp": {"lr": 0.05, "momentum": 0.9},
    "local-sgd": {"lr": 0.05, "momentum": 0.9},
    "mpi": {"lr": 0.05, "momentum": 0.9},
    # Asynchrony acts as momentum of its own (about 1 - 1/N for N workers: each update is
    # computed on weights one or more updates old), so 0.9 on top oscillates or diverges
    # (LeNet-5/MNIST, 2 epochs: 90.2% at a constant LR, 11% and 93% in two cosine runs,
    # against serial's 96.3%), while 0.5 leaves too little (92.6-92.8%). 0.7 measured best
    # (94.6% cosine, 96.7% constant; 0.8: 94.1%).
    "hogwild": {"lr": 0.05, "momentum": 0.7},
}
"""SGD learning rate and momentum each engine uses unless told otherwise; with them every
engine reaches serial's accuracy within a point after the same epochs (tested on MNIST)."""


def engine_optimizer(
    engine: str, *, name: str = "sgd", lr: float | None = None, momentum: float | None = None,
    weight_decay: float = 0.0,
) -> OptimizerConfig:  # fmt: skip
    """The optimizer of ``engine``: its :data:`ENGINE_DEFAULTS` where ``lr`` or ``momentum``
    is None."""
    defaults = ENGINE_DEFAULTS.get(str(engine).lower(), ENGINE_DEFAULTS["ddp"])
    return OptimizerConfig(
        name=name,
        lr=defaults["lr"] if lr is None else lr,
        momentum=defaults["momentum"] if momentum is None else momentum,
        weight_decay=weight_decay,
    )


DATA_PARALLEL_TRAIN: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 64,
    "optimizer": engine_optimizer("ddp"),
    "lr_schedule": "cosine",
    "threads": 1,
}
"""The data-parallel defaults of the shared training settings (the rest: TrainConfig's).
Cosine by default: at a constant LR 0.05 with momentum 0.9 the accuracy after 2 epochs of
LeNet-5/MNIST moved by up to 2 points with float summation order alone (serial 94.05%, ddp
96.10%), too much to compare engines; the decay settles every engine (96.3-96.6%)."""


@dataclass(frozen=True, slots=True)
class FailurePlan:
    """A failure to inject, for tests of failure propagation: ``rank`` fails when it starts
    step ``step`` (0-based), by raising (``raise``) or by dying without a word (``exit``)."""

    rank: int
    step: int = 0
    kind: str = "raise"

    def __post_init__(self) -> None:
        if self.rank < 0 or self.step < 0:
            raise ConfigError(f"failure plan rank {self.rank} and step {self.step} must be >= 0")
        if self.kind not in FAILURE_KINDS:
            raise ConfigError(
                f"unknown failure kind {self.kind!r}: choose one of {', '.join(FAILURE_KINDS)}"
            )


@dataclass(kw_only=True, slots=True)
class DataParallelConfig:
    """How to train data-parallel: engine, processes, batches, length, optimizer, schedule."""

    engine: str = "ddp"
    """serial, ddp, hogwild, local-sgd or mpi."""
    num_ranks: int = 2
    """Worker processes (ranks); one pinned core each by default. ``serial`` runs one."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**DATA_PARALLEL_TRAIN))
    """How to train (the settings every engine shares): ``batch_size``, the samples of one
    optimizer step (see the module docstring for each engine); epochs or steps; the
    optimizer (each worker builds its own: Hogwild and the averaging engines keep
    per-worker optimizer state); the LR schedule, stepped once per optimizer step; the seed
    of the data order (worker ``r`` also seeds its own RNG with ``seed + r``); ``threads``,
    the intra-op threads of each rank (None: 1); ``drop_last`` (each epoch's last,
    incomplete global batch) and ``eval_batch_size``. Defaults: :data:`DATA_PARALLEL_TRAIN`."""
    engine_optimizer: bool = False
    """Replace ``train.optimizer`` by the engine's defaults (:data:`ENGINE_DEFAULTS`: SGD lr
    0.05, momentum 0.9; Hogwild momentum 0.7): what :meth:`of` sets when it is given no
    optimizer, so that a copy for another engine (``--compare``) takes that engine's. Left
    False (built directly), ``train.optimizer`` is used as given: DATA_PARALLEL_TRAIN's is
    ddp's, not Hogwild's."""
    per_process_batch: bool = False
    """``batch_size`` is each rank's batch; the global batch is batch_size x num_ranks."""
    accumulate_steps: int = 1
    """Gradient accumulation: each rank splits its share of a step into this many
    micro-batches and sums their gradients before the update (DDP syncs on the last)."""
    average_every: int | None = None
    """local-sgd / mpi: average the replicas' parameters every this many steps (default 1).
    Ignored, with a warning, by the other engines."""
    transport: str = "auto"
    """ddp, local-sgd: ``gloo``, ``mpi`` or ``auto`` (mpi where mpi4py and mpiexec are
    there and no torchrun started the run, else gloo). ``mpi`` is the ``mpi`` engine's
    only transport; serial and hogwild do not communicate (a transport other than auto
    is ignored, with a warning)."""
    pin: bool = True
    """Pin each worker to its own core (round-robin over the usable cores)."""
    cores: tuple[int, ...] | None = None
    """The cores to pin to; None = every usable core."""
    failure_timeout_s: float = 30.0
    """How long the survivors of a failed rank may take to stop before they are killed."""
    monitor_interval_s: float = 0.25
    """Seconds between two CPU-utilisation samples; 0 turns the monitor off."""
    fail_at: FailurePlan | None = None
    """Test hook: make one rank fail at one step."""

    @classmethod
    def of(cls, *, train: TrainConfig | None = None, **settings: Any) -> DataParallelConfig:
        """A config from flat keywords: the shared training settings (batch_size, epochs,
        steps, optimizer, lr_schedule, warmup_steps, seed, threads, ...) fill ``train``
        (over :data:`DATA_PARALLEL_TRAIN`, or over ``train`` when given), the rest are the
        engine's own. No optimizer (or ``optimizer=None``) and no ``train``: the engine's
        defaults. ``DataParallelConfig.of(engine="ddp", num_ranks=2, steps=10)``."""
        shared, own = split_train_settings(settings)
        if shared.get("optimizer", 0) is None:
            del shared["optimizer"]
        own.setdefault("engine_optimizer", train is None and "optimizer" not in shared)
        base = train if train is not None else TrainConfig(**DATA_PARALLEL_TRAIN)
        return cls(train=replace(base, **shared) if shared else base, **own)

    def replace(self, **changes: Any) -> DataParallelConfig:
        """A copy with ``changes``, flat keywords as :meth:`of` takes them."""
        shared, own = split_train_settings(changes)
        if "optimizer" in shared:
            own.setdefault("engine_optimizer", shared["optimizer"] is None)
            if shared["optimizer"] is None:
                del shared["optimizer"]
        return replace(self, train=replace(self.train, **shared), **own)

    @property
    def threads(self) -> int:
        """Intra-op threads of each rank (``train.threads``; None: 1)."""
        return self.train.threads or 1

    def __post_init__(self) -> None:
        self.engine = str(self.engine).lower()
        if self.train.threads is None:
            self.train = replace(self.train, threads=1)
        if self.engine_optimizer and self.engine in ENGINES:
            self.train = replace(self.train, optimizer=engine_optimizer(self.engine))
        if self.engine not in ENGINES:
            raise ConfigError(
                f"unknown engine {self.engine!r}: choose one of {', '.join(ENGINES)}, "
                "e.g. --engine ddp"
            )
        self.transport = str(self.transport).lower()
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                f"unknown transport {self.transport!r}: choose one of {', '.join(TRANSPORTS)}, "
                "e.g. --transport auto"
            )
        if self.engine == "mpi" and self.transport == "gloo":
            raise ConfigError(
                "--engine mpi is local SGD over MPI and cannot use --transport gloo: use "
                "--engine local-sgd --transport gloo"
            )
        if self.engine not in COMMUNICATING_ENGINES and self.transport != "auto":
            warnings.warn(
                f"transport {self.transport!r} is ignored by engine {self.engine!r}, whose "
                "workers do not exchange tensors",
                ParnnWarning,
                stacklevel=2,
            )
        for name in ("num_ranks", "accumulate_steps"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{name.replace('_', ' ')} {value} must be >= 1")
        if self.engine == "serial" and self.num_ranks != 1:
            raise ConfigError(
                f"engine serial runs one process, not {self.num_ranks}: drop --ranks "
                "(use --threads for intra-op threads) or pick a parallel engine"
            )
        if self.engine in SYNCHRONOUS_ENGINES and not self.per_process_batch:
            if self.train.batch_size < self.num_ranks:
                raise ConfigError(
                    f"more ranks ({self.num_ranks}) than samples per batch "
                    f"({self.train.batch_size}): every rank needs at least one sample per step; "
                    f"use --batch-size >= {self.num_ranks} or fewer --ranks"
                )
            if self.train.batch_size % self.num_ranks:
                lower = self.train.batch_size - self.train.batch_size % self.num_ranks
                raise ConfigError(
                    f"global batch {self.train.batch_size} is not divisible by {self.num_ranks} "
                    f"ranks: use --batch-size {lower} or "
                    f"{lower + self.num_ranks}, or --per-process-batch"
                )
        if self.accumulate_steps > self.rank_batch_size:
            raise ConfigError(
                f"{self.accumulate_steps} accumulation steps exceed the {self.rank_batch_size} "
                "samples each rank takes per step: use --accumulate <= that"
            )
        if self.average_every is not None:
            if self.average_every < 1:
                raise ConfigError(
                    f"average-every {self.average_every} must be >= 1 steps, e.g. --average-every 4"
                )
            if self.engine not in AVERAGING_ENGINES:
                warnings.warn(
                    f"average_every is ignored by engine {self.engine!r}; it applies to "
                    f"{' and '.join(AVERAGING_ENGINES)}",
                    ParnnWarning,
                    stacklevel=2,
                )
        if self.failure_timeout_s <= 0:
            raise ConfigError(f"failure timeout {self.failure_timeout_s} s must be > 0")
        if self.monitor_interval_s < 0:
            raise ConfigError(f"monitor interval {self.monitor_interval_s} s must be >= 0")
        if self.fail_at is not None and self.fail_at.rank >= self.num_ranks:
            raise ConfigError(
                f"failure plan rank {self.fail_at.rank} is out of range for {self.num_ranks} ranks"
            )

    @property
    def synchronous(self) -> bool:
        return self.engine in SYNCHRONOUS_ENGINES

    @property
    def averaging_period(self) -> int:
        """Steps between two parameter averagings (local-sgd, mpi)."""
        return self.average_every if self.average_every is not None else 1

    @property
    def rank_batch_size(self) -> int:
        """Samples one rank takes per step (before the last, smaller batch of an epoch)."""
        if self.synchronous and not self.per_process_batch:
            return self.train.batch_size // self.num_ranks
        return self.train.batch_size

    @property
    def batch_copies(self) -> int:
        """How many ``batch_size`` batches one step takes: 1 when the ranks split it, else
        one per rank (``per_process_batch``, Hogwild)."""
        return 1 if self.synchronous and not self.per_process_batch else self.num_ranks

    @property
    def round_size(self) -> int:
        """Samples all ranks take together in one step (a 'round' for Hogwild)."""
        return self.rank_batch_size * self.num_ranks

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "num_ranks": self.num_ranks,
            "train": self.train.to_dict(),
            "engine_optimizer": self.engine_optimizer,
            "per_process_batch": self.per_process_batch,
            "rank_batch_size": self.rank_batch_size,
            "global_batch_size": self.round_size,
            "accumulate_steps": self.accumulate_steps,
            "average_every": self.averaging_period if self.engine in AVERAGING_ENGINES else None,
            "transport": self.transport,
            "pin": self.pin,
            "cores": list(self.cores) if self.cores is not None else None,
        }
