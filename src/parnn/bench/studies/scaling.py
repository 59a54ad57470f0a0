"""The scaling study: speedup and efficiency against the number of pipeline stages.

    parnn study scaling --model vgg16 --stages 1,2,4

One cell = a number of stages ``k``; everything else (mini-batch, micro-batches, schedule,
partition method) stays fixed. Speedup is ``T(k0) / T(k)`` against the smallest ``k0``
measured (1 by default, the model on one process), efficiency is the speedup over
``k / k0``. The report (:mod:`.scaling_report`) draws both against the ideal and the
simulator, and marks the number of usable cores: beyond it stage processes share cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parnn.bench.cells import Cell
from parnn.bench.studies.driver import StudyOutcome, run_study
from parnn.bench.studies.runs import Measure, Predict, RunSpec
from parnn.bench.studies.settings import (
    PARTITION_NAMES,
    SYNTHETIC_CLASSES,
    RunSettings,
    check_model_name,
    check_partition,
    check_pipeline_shape,
    check_positive_list,
    check_stages_fit,
    model_units,
)
from parnn.errors import ConfigError

__all__ = ["KIND", "ScalingSettings", "run_scaling_study", "scaling_cells", "scaling_spec"]

KIND = "scaling"


@dataclass(kw_only=True, slots=True)
class ScalingSettings(RunSettings):
    """The sweep: numbers of stages, for one model and one mini-batch."""

    model: str = "vgg16"
    """The model (zoo name or user spec)."""
    num_ranks: tuple[int, ...] = (1, 2, 4)
    """Numbers of pipeline ranks (``--stages``; one stage each) to compare; the smallest is
    the baseline (1: no pipeline)."""
    batch_size: int = 32
    """Samples per training step."""
    num_microbatches: int = 4
    """Micro-batches per step, the same for every number of stages."""
    partition: str = "auto"
    """How the stages are cut (a scheme or balancer name)."""

    def __post_init__(self) -> None:
        self.check_run_settings()
        check_model_name(self.model)
        stages = check_positive_list("--stages", self.num_ranks, "--stages")
        self.num_ranks = tuple(sorted(stages))
        if len(self.num_ranks) < 2:
            raise ConfigError(
                f"--stages {self.num_ranks[0]}: scaling needs at least two numbers of stages, "
                "e.g. --stages 1,2,4"
            )
        if self.batch_size < 1 or self.num_microbatches < 1:
            raise ConfigError(
                f"--batch-size and --microbatches must be >= 1, got {self.batch_size} and "
                f"{self.num_microbatches}"
            )
        if self.batch_size % self.num_microbatches:
            raise ConfigError(
                f"--batch-size {self.batch_size} does not split into {self.num_microbatches} "
                f"equal micro-batches: use a multiple of {self.num_microbatches}"
            )
        if self.partition not in PARTITION_NAMES:
            raise ConfigError(
                f"--partition {self.partition!r}: scaling over several numbers of stages needs "
                f"a partition name ({', '.join(PARTITION_NAMES)}), not explicit boundaries"
            )
        check_partition(self.partition, self.num_ranks)

        check_pipeline_shape(self.schedule, self.num_ranks, [self.num_microbatches])


def scaling_cells(settings: ScalingSettings) -> list[Cell]:
    return [Cell({"stages": stages}) for stages in settings.num_ranks]


def scaling_spec(settings: ScalingSettings, cell: Cell) -> RunSpec:
    return RunSpec(
        model=settings.model,
        input_shape=settings.input_shape,
        num_classes=SYNTHETIC_CLASSES,
        batch_size=settings.batch_size,
        num_microbatches=settings.num_microbatches,
        num_ranks=int(cell.key["stages"]),
        partition=settings.partition,
        schedule=settings.schedule,
        steps=settings.steps,
        warmup_steps=settings.warmup_steps,
        threads=settings.threads,
        seed=settings.seed,
    )


def run_scaling_study(
    settings: ScalingSettings,
    directory: str | Path,
    *,
    measure: Measure,
    predict: Predict | None = None,
    quiet: bool = False,
    render: bool = True,
    cluster: Any = None,
) -> StudyOutcome:
    """Run (or resume) the scaling study in ``directory`` and render its report."""
    from parnn.bench.studies.scaling_report import build_scaling_report

    units = model_units(settings.model, settings.input_shape, SYNTHETIC_CLASSES)
    check_stages_fit(settings.model, settings.num_ranks, units)
    return run_study(
        KIND,
        settings,
        scaling_cells(settings),
        lambda cell: scaling_spec(settings, cell),
        directory,
        measure=measure,
        predict=predict,
        quiet=quiet,
        render=render,
        report=build_scaling_report,
        cluster=cluster,
    )
