"""The settings of one reference training run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from parnn.errors import ConfigError
from parnn.train.optim import OptimizerConfig
from parnn.train.schedules import SCHEDULES

__all__ = ["TRAIN_FIELDS", "TrainConfig", "split_train_settings"]


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """How to train: length, batches, optimizer, LR schedule, seed, threads, checkpoints.

    The reference trainer takes one; every engine config holds one as its ``train`` (the
    settings the engines share) beside its own fields. Engines train from their own start
    and write no reference checkpoints: they leave ``checkpoint_every`` and
    ``keep_checkpoints`` alone."""

    epochs: int = 3
    """Passes over the training data (used when ``steps`` is None)."""
    steps: int | None = None
    """Optimizer steps to run; overrides ``epochs`` (may end mid-epoch)."""
    batch_size: int = 64
    """Samples per mini-batch (the last batch of an epoch is smaller unless ``drop_last``)."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """Optimizer name and hyper-parameters."""
    lr_schedule: str = "constant"
    """LR schedule: constant, step, cosine or warm (linear warm-up then cosine)."""
    warmup_steps: int | None = None
    """Warm-up steps of the 'warm' schedule; None = 10% of the run."""
    seed: int = 0
    """Seed of the data order (with the epoch). Weights are seeded by the caller."""
    threads: int | None = None
    """torch intra-op threads during training; None keeps the current setting."""
    checkpoint_every: int | None = None
    """Write a checkpoint every this many steps (and at the end); None = never."""
    keep_checkpoints: int = 2
    """How many of the latest checkpoints to keep on disk."""
    drop_last: bool = False
    """Drop each epoch's last, incomplete mini-batch."""
    eval_batch_size: int = 256
    """Mini-batch size of evaluation (does not change the results)."""

    def __post_init__(self) -> None:
        self.lr_schedule = str(self.lr_schedule).lower()
        if self.batch_size <= 0:
            raise ConfigError(f"batch size {self.batch_size} must be > 0, e.g. --batch-size 64")
        if self.steps is None and self.epochs <= 0:
            raise ConfigError(f"epochs {self.epochs} must be > 0, e.g. --epochs 3")
        if self.steps is not None and self.steps <= 0:
            raise ConfigError(f"steps {self.steps} must be > 0, or leave --steps unset")
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown LR schedule {self.lr_schedule!r}: choose one of {', '.join(SCHEDULES)}"
            )
        if self.warmup_steps is not None and self.warmup_steps <= 0:
            raise ConfigError(f"warm-up steps {self.warmup_steps} must be > 0, or leave unset")
        if self.seed < 0:
            raise ConfigError(f"seed {self.seed} must be >= 0")
        if self.threads is not None and self.threads <= 0:
            raise ConfigError(f"threads {self.threads} must be > 0, e.g. --threads 1")
        if self.checkpoint_every is not None and self.checkpoint_every <= 0:
            raise ConfigError(
                f"checkpoint interval {self.checkpoint_every} must be > 0 steps, or leave unset"
            )
        if self.keep_checkpoints <= 0:
            raise ConfigError(f"keep_checkpoints {self.keep_checkpoints} must be > 0")
        if self.eval_batch_size <= 0:
            raise ConfigError(f"evaluation batch size {self.eval_batch_size} must be > 0")

    def steps_per_epoch(self, num_samples: int) -> int:
        from parnn.train.batches import num_batches  # torch: engine configs stay light

        return num_batches(num_samples, self.batch_size, drop_last=self.drop_last)

    def total_steps(self, num_samples: int) -> int:
        """``steps`` when given, else ``epochs`` x mini-batches per epoch."""
        if self.steps is not None:
            return self.steps
        return self.epochs * self.steps_per_epoch(num_samples)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer.to_dict(),
            "lr_schedule": self.lr_schedule,
            "warmup_steps": self.warmup_steps,
            "seed": self.seed,
            "threads": self.threads,
            "checkpoint_every": self.checkpoint_every,
            "keep_checkpoints": self.keep_checkpoints,
            "drop_last": self.drop_last,
            "eval_batch_size": self.eval_batch_size,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config of :meth:`to_dict`; keys it does not know (an engine's own) are left."""
        known = {name: values[name] for name in TRAIN_FIELDS if name in values}
        if isinstance(known.get("optimizer"), Mapping):
            known["optimizer"] = OptimizerConfig(**known["optimizer"])
        return cls(**known)


TRAIN_FIELDS: tuple[str, ...] = tuple(TrainConfig.__dataclass_fields__)
"""The settings every engine shares: an engine config holds them in its ``train``."""


def split_train_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flat keyword settings of an engine config -> (its ``train``'s, the engine's own)."""
    shared = {name: value for name, value in settings.items() if name in TRAIN_FIELDS}
    own = {name: value for name, value in settings.items() if name not in TRAIN_FIELDS}
    return shared, own
