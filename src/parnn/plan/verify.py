"""Run candidates for a few steps through the real engines and measure their samples/s.

One process with ``t`` threads is the ``serial`` engine of :func:`parnn.data_parallel.
run_data_parallel` (a spawned, pinned process, like every other candidate); data-parallel
candidates are that function's engines; pipelines are :func:`parnn.pipeline.run_pipeline`
with the partition and micro-batch count the plan chose, and hybrids the same with
``replicas`` copies of that pipeline. Each run takes ``steps`` steps and its throughput
leaves the first ``warmup_steps`` out (start-up, first-touch allocation). Candidates on
several nodes stay unmeasured (None).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from parnn.errors import ConfigError
from parnn.plan.enumerate import Candidate
from parnn.plan.predict import Prediction

__all__ = ["VerifySettings", "measure_candidate", "steady_samples_per_s"]


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
    seed: int = 0
    """Seeds the weights and the data."""

    def __post_init__(self) -> None:
        if self.steps <= self.warmup_steps or self.warmup_steps < 0:
            raise ConfigError(
                f"need steps ({self.steps}) > warmup steps ({self.warmup_steps}) >= 0"
            )

    @property
    def num_samples(self) -> int:
        """Samples to load: enough for two distinct batches (synthetic: what to draw)."""
        return 2 * self.batch_size + 64


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


def _run_data_parallel(candidate: Candidate, settings: VerifySettings) -> float:
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
    config = DataParallelConfig(
        engine="serial" if serial else str(candidate.engine),
        num_processes=1 if serial else candidate.replicas,
        threads_per_process=candidate.threads,
        batch_size=settings.batch_size,
        steps=settings.steps,
        seed=settings.seed,
        monitor_interval_s=0.0,
    )
    result = run_data_parallel(
        copy.deepcopy(setup.model), setup.train_data, None, config, quiet=True
    )
    if result is None:  # pragma: no cover - only under an external launcher
        raise ConfigError("verification starts its own processes: run it without torchrun")
    points_per_step = candidate.replicas if candidate.engine == "hogwild" else 1
    return steady_samples_per_s(
        result.curve.time_s,
        result.curve.samples,
        skip_points=settings.warmup_steps * points_per_step,
    )


def _run_pipeline(candidate: Candidate, prediction: Prediction, settings: VerifySettings) -> float:
    from parnn.partition import Partition
    from parnn.pipeline import PipelineConfig, run_pipeline

    if prediction.partition is None or prediction.num_microbatches is None:
        raise ConfigError(f"{candidate.label}: the plan chose no partition to run")
    config = PipelineConfig(
        model=settings.model,
        data=settings.data,
        data_dir=settings.data_dir,
        input_shape=settings.input_shape,
        num_samples=settings.num_samples,
        num_stages=candidate.stages,
        replicas=candidate.replicas,
        stages_per_rank=candidate.chunks,
        partition=Partition(boundaries=prediction.partition),
        schedule=str(candidate.schedule),
        num_microbatches=prediction.num_microbatches,
        batch_size=settings.batch_size,
        steps=settings.steps,
        seed=settings.seed,
        evaluate=False,
        threads_per_stage=candidate.threads,
        measure_warmup_steps=settings.warmup_steps,
        trace_steps=0,
    )
    result = run_pipeline(config, quiet=True)
    if result is None:  # pragma: no cover - only under torchrun
        raise ConfigError("verification starts its own processes: run it without torchrun")
    return float(result.samples_per_s)


def measure_candidate(
    candidate: Candidate, prediction: Prediction, settings: VerifySettings
) -> float | None:
    """Measured samples/s of ``candidate`` (None for a candidate no engine runs yet)."""
    if not candidate.runnable:
        return None
    if candidate.axis in ("threads", "data"):
        return _run_data_parallel(candidate, settings)
    return _run_pipeline(candidate, prediction, settings)
