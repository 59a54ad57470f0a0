"""Shared by the partitioner benchmarks: profiles, one measured pipeline run, the table of
machine facts, and a little statistics."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parnn.partition import Partition, ProfileConfig, ProfileSource
from parnn.results import machine_facts

HERE = Path(__file__).resolve().parent
NUM_CLASSES = 10  # the pipeline trains on synthetic data with 10 classes


def profile_source(
    model: str, input_shape: tuple[int, ...], *, cache_dir: Path, comm: str, repeats: int
) -> ProfileSource:
    """Profiles of ``model`` as the pipeline builds it (10-class head), cached."""
    return ProfileSource(
        ProfileConfig(
            model=model,
            input_shape=input_shape,
            num_classes=NUM_CLASSES,
            cache_dir=cache_dir,
            comm=comm,
            repeats=repeats,
            quiet=True,
        )
    )


def measure_run(
    *,
    model: str,
    input_shape: tuple[int, ...],
    partition: Partition,
    batch_size: int,
    num_microbatches: int,
    schedule: str,
    steps: int,
    warmup_steps: int,
) -> dict[str, Any]:
    """One launch of the pipeline runtime on synthetic data, SGD with momentum (the
    optimizer the profile's update times are for); its median step and per-stage costs."""
    from parnn.pipeline import PipelineConfig, run_pipeline
    from parnn.train import OptimizerConfig

    config = PipelineConfig.of(
        model=model,
        data="synthetic",
        input_shape=input_shape,
        num_samples=batch_size * (steps + warmup_steps),
        num_ranks=partition.num_stages,
        partition=partition,
        schedule=schedule,
        num_microbatches=num_microbatches,
        batch_size=batch_size,
        steps=steps + warmup_steps,
        evaluate=False,
        optimizer=OptimizerConfig(name="sgd", lr=0.01),
        measure_warmup_steps=warmup_steps,
    )
    result = run_pipeline(config, quiet=True)
    assert result is not None  # launched here, so this process is the master
    return {
        "step_time_s": result.step_time_s,
        "samples_per_s": result.samples_per_s,
        "bubble_fraction": result.bubble_fraction,
        "stages": [
            {"forward_s": s.forward_s, "backward_s": s.backward_s, "wait_s": s.wait_s}
            for s in result.stages
        ],
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine_line(facts: dict[str, Any] | None = None) -> str:
    facts = facts or machine_facts()
    return (
        f"{facts['cpu_model']}, {facts['usable_cores']} usable cores, {facts['memory_gib']} GiB, "
        f"load average {facts['load_average_1m']} (1 min), torch {facts['torch']}, "
        f"python {facts['python']}"
    )
