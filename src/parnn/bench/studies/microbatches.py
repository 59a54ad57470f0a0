"""The micro-batches study (the GPipe write-up): one mini-batch split into ``m`` micro-batches,
for every ``m`` (and every number of stages) asked for.

    parnn study microbatches --model vgg16 --stages 4 --microbatches 1,2,4,8,16,32

One cell = (stages, m). The mini-batch stays the same, so a larger ``m`` means smaller
micro-batches: more overlap between the stages (a smaller bubble) but less efficient work
per micro-batch and more transfers. The report (:mod:`.microbatches_report`) shows the
end-to-end, forward and backward times, per-stage compute vs communication, the bytes at
every boundary, the partition efficiency with and without communication, the optimum ``m``
and the simulator's prediction beside every measured point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parnn.bench.cells import Cell
from parnn.bench.studies.driver import StudyOutcome, run_study
from parnn.bench.studies.runs import Measure, Predict, RunSpec
from parnn.bench.studies.settings import (
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
from parnn.partition.methods import needs_profile

__all__ = [
    "KIND",
    "MicrobatchesSettings",
    "Resolve",
    "microbatches_cells",
    "microbatches_spec",
    "run_microbatches_study",
]

KIND = "microbatches"


@dataclass(kw_only=True, slots=True)
class MicrobatchesSettings(RunSettings):
    """The sweep: numbers of stages x numbers of micro-batches, for one model."""

    schedule: str = "gpipe"
    model: str = "vgg16"
    """The model (zoo name or user spec)."""
    num_ranks: tuple[int, ...] = (4,)
    """Pipeline ranks (``--stages``; one stage each); 1 shows what micro-batching costs
    without any overlap."""
    microbatches: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    """Micro-batches per step (each must divide the batch size)."""
    batch_size: int = 32
    """Samples per training step (the mini-batch that is split)."""
    partition: str = "auto"
    """How the stages are cut: a scheme or balancer name ('fwd-time' is GPipe's) or
    explicit boundaries."""
    repartition: bool = False
    """Choose a cost-aware partition again for every m (from a profile at its micro-batch
    size); by default it is chosen once per number of stages, at the smallest m, so that m
    is the only thing that changes between cells."""

    def __post_init__(self) -> None:
        self.check_run_settings()
        check_model_name(self.model)
        self.num_ranks = check_positive_list("--stages", self.num_ranks, "--stages")
        self.microbatches = check_positive_list(
            "--microbatches", self.microbatches, "--microbatches"
        )
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        uneven = [m for m in self.microbatches if self.batch_size % m]
        if uneven:
            fit = math.lcm(*self.microbatches)
            raise ConfigError(
                f"--batch-size {self.batch_size} does not split into {uneven[0]} equal "
                f"micro-batches: every --microbatches value must divide it; try --batch-size "
                f"{fit * max(1, round(self.batch_size / fit))}"
            )
        check_partition(self.partition, self.num_ranks)

        check_pipeline_shape(self.schedule, self.num_ranks, self.microbatches)


def microbatches_cells(settings: MicrobatchesSettings) -> list[Cell]:
    return [
        Cell({"stages": stages, "microbatches": m})
        for stages in settings.num_ranks
        for m in settings.microbatches
    ]


Resolve = Callable[[RunSpec], Sequence[int]]
"""spec -> the boundaries its (cost-aware) partition names."""


def microbatches_spec(
    settings: MicrobatchesSettings, cell: Cell, *, partition: str | None = None
) -> RunSpec:
    """The run of ``cell``; ``partition`` replaces the settings' (fixed boundaries)."""
    return RunSpec(
        model=settings.model,
        input_shape=settings.input_shape,
        num_classes=SYNTHETIC_CLASSES,
        batch_size=settings.batch_size,
        num_microbatches=int(cell.key["microbatches"]),
        num_ranks=int(cell.key["stages"]),
        partition=settings.partition if partition is None else partition,
        schedule=settings.schedule,
        steps=settings.steps,
        warmup_steps=settings.warmup_steps,
        threads=settings.threads,
        seed=settings.seed,
    )


def run_microbatches_study(
    settings: MicrobatchesSettings,
    directory: str | Path,
    *,
    measure: Measure,
    predict: Predict | None = None,
    resolve: Resolve | None = None,
    quiet: bool = False,
    render: bool = True,
    cluster: Any = None,
) -> StudyOutcome:
    """Run (or resume) the micro-batches study in ``directory`` and render its report.

    With ``resolve`` and a cost-aware partition (and not ``settings.repartition``), the
    partition is resolved once per number of stages at the smallest m and every cell of
    that number of stages runs those boundaries.
    """
    from parnn.bench.studies.microbatches_report import build_microbatches_report

    units = model_units(settings.model, settings.input_shape, SYNTHETIC_CLASSES)
    check_stages_fit(settings.model, settings.num_ranks, units)
    check_partition(settings.partition, settings.num_ranks, units)
    fixed: dict[int, str] = {}
    if resolve is not None and needs_profile(settings.partition) and not settings.repartition:
        reference = min(settings.microbatches)
        for stages in settings.num_ranks:
            cell = Cell({"stages": stages, "microbatches": reference})
            boundaries = resolve(microbatches_spec(settings, cell))
            fixed[stages] = ",".join(str(b) for b in boundaries)
    return run_study(
        KIND,
        settings,
        microbatches_cells(settings),
        lambda cell: microbatches_spec(
            settings, cell, partition=fixed.get(int(cell.key["stages"]))
        ),
        directory,
        measure=measure,
        predict=predict,
        quiet=quiet,
        render=render,
        report=build_microbatches_report,
        cluster=cluster,
    )
