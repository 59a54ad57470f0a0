"""What a training run reports: per-step and per-epoch records, and the final result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parnn.train.config import TrainConfig
from parnn.train.step import EvalResult

__all__ = ["EpochRecord", "StepRecord", "TrainResult"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One optimizer step."""

    step: int
    """Steps done after this one (1-based)."""
    epoch: int
    """Epoch of the step (0-based)."""
    loss: float
    """Mean mini-batch loss before the update."""
    lr: float
    """Learning rate the update used."""
    wall_s: float
    """Seconds since the run started (summed over resumed sessions)."""
    samples: int
    """Training samples seen so far, this step included."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "loss": self.loss,
            "lr": self.lr,
            "wall_s": self.wall_s,
            "samples": self.samples,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> StepRecord:
        return cls(
            step=int(record["step"]),
            epoch=int(record["epoch"]),
            loss=float(record["loss"]),
            lr=float(record["lr"]),
            wall_s=float(record["wall_s"]),
            samples=int(record["samples"]),
        )


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """The end of an epoch (or of a run that stops mid-epoch: ``complete`` is False)."""

    epoch: int
    step: int
    """Steps done at the end of the epoch."""
    train_loss: float
    """Mean of the epoch's mini-batch losses."""
    val: EvalResult | None
    """Validation metrics; None without validation data."""
    wall_s: float
    complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "train_loss": self.train_loss,
            "val_loss": self.val.loss if self.val else None,
            "val_accuracy": self.val.accuracy if self.val else None,
            "val": self.val.to_dict() if self.val else None,
            "wall_s": self.wall_s,
            "complete": self.complete,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> EpochRecord:
        val = record.get("val")
        return cls(
            epoch=int(record["epoch"]),
            step=int(record["step"]),
            train_loss=float(record["train_loss"]),
            val=EvalResult.from_dict(val) if val else None,
            wall_s=float(record["wall_s"]),
            complete=bool(record.get("complete", True)),
        )


@dataclass(frozen=True, slots=True)
class TrainResult:
    """The outcome of :func:`parnn.train.train`."""

    config: TrainConfig
    history: tuple[EpochRecord, ...]
    """One record per epoch (plus a final incomplete one when a run stops mid-epoch)."""
    step_log: tuple[StepRecord, ...]
    """One record per optimizer step."""
    final: EvalResult | None
    """Validation metrics of the final parameters; None without validation data."""
    steps: int
    samples: int
    """Training samples processed (all sessions of a resumed run)."""
    elapsed_s: float
    """Wall time of the run, evaluation and checkpoints included (all sessions)."""
    train_s: float
    """Seconds spent in training steps only (batch gather, forward, backward, update)."""
    samples_per_s: float
    """Training throughput: samples / train_s."""
    resumed_from: int | None
    """Step of the checkpoint this session started from; None for a fresh run."""
    out_dir: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "steps": self.steps,
            "samples": self.samples,
            "elapsed_s": self.elapsed_s,
            "train_s": self.train_s,
            "samples_per_s": self.samples_per_s,
            "final": self.final.to_dict() if self.final else None,
            "history": [record.to_dict() for record in self.history],
            "step_log": [record.to_dict() for record in self.step_log],
            "resumed_from": self.resumed_from,
            "out_dir": str(self.out_dir) if self.out_dir is not None else None,
        }
