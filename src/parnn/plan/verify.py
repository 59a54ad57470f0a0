"""Run candidates for a few steps through the real engines and measure their samples/s.

One process with ``t`` threads is the ``serial`` engine of :func:`parnn.data_parallel.
run_data_parallel` (a spawned, pinned process, like every other candidate); data-parallel
candidates are that function's engines; pipelines are :func:`parnn.pipeline.run_pipeline`
with the partition and micro-batch count the plan chose, and hybrids the same with
``replicas`` copies of that pipeline. Each run takes ``steps`` steps, or more when the
measured part would otherwise last less than ``measure_s`` at the predicted pace
(:func:`run_length`), and its throughput leaves the first ``warmup_steps`` out (start-up,
first-touch allocation). With ``epochs``
set, a run trains that many passes over the whole dataset instead and is evaluated on the
held-out split, so that candidates compare in accuracy too (:func:`measure_run`;
``parnn demo``). Candidates on several nodes stay unmeasured (None).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parnn.errors import ConfigError
from parnn.plan.enumerate import Candidate
from parnn.plan.predict import Prediction

if TYPE_CHECKING:
    from parnn.train.optim import OptimizerConfig

__all__ = ["MAX_VERIFY_SAMPLES", "MAX_VERIFY_STEPS", "Measurement", "VerifySettings",
           "measure_candidate", "measure_run", "run_length", "steady_samples_per_s"]  # fmt: skip


MAX_VERIFY_SAMPLES = 8192
"""The most samples a verification run loads or draws (longer runs take several epochs)."""


@dataclass(kw_only=True, slots=True)
class VerifySettings:
    """The data and length of every verification run."""

    model: str
    """Zoo name or user model spec."""
    input_shape: tuple[int, ...]
    """Sample shape (C, H, W) the runs train at (data is resized to it)."""
    batch_size: int
    """Global batch of one step."""
    data: str = "synthetic"
    """Dataset (synthetic, digits, mnist, cifar10)."""
    data_dir: Path | None = None
    """Directory of the dataset files."""
    steps: int = 6
    """Optimizer steps per run."""
    warmup_steps: int = 2
    """Steps left out of the measured throughput."""
    measure_s: float = 0.0
    """Measure each run for at least about this long: :func:`run_length` adds steps to
    ``steps`` as the candidate's predicted step time says. 0: exactly ``steps``."""
    seed: int = 0
    """Seeds the weights and the data."""
    epochs: int | None = None
    """Train this many passes over the whole dataset (``steps`` is then unused) and
    evaluate on the held-out split; None: ``steps`` steps on a few batches, no evaluation."""
    optimizer: OptimizerConfig | None = None
    """The optimizer of every run; None: each engine's default."""
    lr_schedule: str | None = None
    """The LR schedule of every run (constant, step, cosine, warm); None: each engine's
    default."""

    def __post_init__(self) -> None:
        if self.steps <= self.warmup_steps or self.warmup_steps < 0:
            raise ConfigError(
                f"need steps ({self.steps}) > warmup steps ({self.warmup_steps}) >= 0"
            )
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs {self.epochs} must be >= 1, e.g. --epochs 3")

    @property
    def num_samples(self) -> int | None:
        """Samples to load (synthetic: to draw): enough that the run's steps make one epoch,
        up to :data:`MAX_VERIFY_SAMPLES` (an epoch's end drains an asynchronous pipeline:
        with two batches an epoch, PipeDream on MobileNetV2 measured half its pace); the
        whole dataset (None) when training for epochs."""
        if self.epochs is not None:
            return None
        wanted = (self.steps + 1) * self.batch_size
        return max(2 * self.batch_size + 64, min(wanted, MAX_VERIFY_SAMPLES))


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one verification run measured."""

    samples_per_s: float
    """Steady training throughput (the first ``warmup_steps`` left out)."""
    val_accuracy: float | None = None
    """Accuracy on the held-out split after training (None: a run of steps, not evaluated)."""
    wall_s: float = 0.0
    """Seconds of the whole run, start-up and evaluation included."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples_per_s": self.samples_per_s,
            "val_accuracy": self.val_accuracy,
            "wall_s": self.wall_s,
        }


def steady_samples_per_s(time_s: list[float], samples: list[int], *, skip_points: int) -> float:
    """Samples per second between the end of point ``skip_points - 1`` and the last point of
    a cumulative curve (``time_s``, ``samples``); the whole curve when it is too short."""
    if not time_s:
        return 0.0
    first = min(max(skip_points, 1), len(time_s) - 1) - 1
    if first < 0:
        return samples[-1] / time_s[-1] if time_s[-1] > 0 else 0.0
    elapsed = time_s[-1] - time_s[first]
    return (samples[-1] - samples[first]) / elapsed if elapsed > 0 else 0.0


def _run_data_parallel(candidate: Candidate, settings: VerifySettings) -> Measurement:
    from parnn.data_parallel import DataParallelConfig, run_data_parallel
    from parnn.train.setup import setup_training

    setup = setup_training(
        settings.model,
        settings.data,
        data_dir=settings.data_dir,
        input_shape=settings.input_shape,
        seed=settings.seed,
        num_samples=settings.num_samples,
    )
    serial = candidate.axis == "threads"
    by_epochs = settings.epochs is not None
    optional: dict[str, Any] = {}
    if settings.optimizer is not None:
        optional["optimizer"] = settings.optimizer
    if settings.lr_schedule is not None:
        optional["lr_schedule"] = settings.lr_schedule
    config = DataParallelConfig.of(
        engine="serial" if serial else str(candidate.engine),
        num_ranks=1 if serial else candidate.replicas,
        threads=candidate.threads,
        batch_size=settings.batch_size,
        steps=None if by_epochs else settings.steps,
        epochs=settings.epochs or 1,
        seed=settings.seed,
        monitor_interval_s=0.0,
        **optional,
    )
    result = run_data_parallel(
        copy.deepcopy(setup.model),
        setup.train_data,
        setup.val_data if by_epochs else None,
        config,
        quiet=True,
    )
    if result is None:  # pragma: no cover - only under an external launcher
        raise ConfigError("verification starts its own processes: run it without torchrun")
    points_per_step = candidate.replicas if candidate.engine == "hogwild" else 1
    rate = steady_samples_per_s(
        result.curve.time_s,
        result.curve.samples,
        skip_points=settings.warmup_steps * points_per_step,
    )
    accuracy = result.val.accuracy if by_epochs and result.val is not None else None
    return Measurement(samples_per_s=rate, val_accuracy=accuracy)


def _run_pipeline(
    candidate: Candidate, prediction: Prediction, settings: VerifySettings
) -> Measurement:
    from parnn.partition import Partition
    from parnn.pipeline import PipelineConfig, run_pipeline

    if prediction.partition is None or prediction.num_microbatches is None:
        raise ConfigError(f"{candidate.label}: the plan chose no partition to run")
    optional: dict[str, Any] = {}
    if settings.optimizer is not None:
        optional["optimizer"] = settings.optimizer
    if settings.lr_schedule is not None:
        optional["lr_schedule"] = settings.lr_schedule
    config = PipelineConfig.of(
        model=settings.model,
        data=settings.data,
        data_dir=settings.data_dir,
        input_shape=settings.input_shape,
        num_samples=settings.num_samples,
        num_ranks=candidate.stages,
        replicas=candidate.replicas,
        stages_per_rank=candidate.chunks,
        partition=Partition(boundaries=prediction.partition),
        schedule=str(candidate.schedule),
        num_microbatches=prediction.num_microbatches,
        batch_size=settings.batch_size,
        steps=None if settings.epochs is not None else settings.steps,
        epochs=settings.epochs or 1,
        seed=settings.seed,
        evaluate=settings.epochs is not None,
        threads=candidate.threads,
        measure_warmup_steps=settings.warmup_steps,
        trace_steps=0,
        **optional,
    )
    result = run_pipeline(config, quiet=True)
    if result is None:  # pragma: no cover - only under torchrun
        raise ConfigError("verification starts its own processes: run it without torchrun")
    accuracy = result.val_accuracy if settings.epochs is not None else None
    return Measurement(samples_per_s=float(result.samples_per_s), val_accuracy=accuracy)


MAX_VERIFY_STEPS = 5000
"""The most steps :func:`run_length` gives one verification run."""


def run_length(settings: VerifySettings, prediction: Prediction) -> VerifySettings:
    """``settings`` with enough steps that the measured part (after the warm-up steps)
    lasts about ``measure_s`` at the predicted step time; never fewer than ``steps``."""
    if settings.epochs is not None or settings.measure_s <= 0 or not prediction.step_s > 0:
        return settings
    needed = settings.warmup_steps + math.ceil(settings.measure_s / prediction.step_s)
    return replace(settings, steps=max(settings.steps, min(needed, MAX_VERIFY_STEPS)))


def measure_run(
    candidate: Candidate, prediction: Prediction, settings: VerifySettings
) -> Measurement | None:
    """Run ``candidate`` as ``settings`` say (for at least ``settings.measure_s`` of
    measured steps) and measure it (None for a candidate no engine runs yet)."""
    if not candidate.runnable:
        return None
    settings = run_length(settings, prediction)
    started = time.perf_counter()
    if candidate.axis in ("threads", "data"):
        measured = _run_data_parallel(candidate, settings)
    else:
        measured = _run_pipeline(candidate, prediction, settings)
    return replace(measured, wall_s=time.perf_counter() - started)


def measure_candidate(
    candidate: Candidate, prediction: Prediction, settings: VerifySettings
) -> float | None:
    """Measured samples/s of ``candidate`` (None for a candidate no engine runs yet)."""
    measured = measure_run(candidate, prediction, settings)
    return None if measured is None else measured.samples_per_s
