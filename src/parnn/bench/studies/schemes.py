"""The schemes study (the nn_pipeline write-up): every named layer-distribution scheme plus
``auto``, per model and batch size.

    parnn study schemes --models alexnet,vgg16,resnet50 --batch-sizes 1,2,4,8,16 --stages 4

One cell = (model, batch size, scheme). As in the write-up, a *batch* flows through the
stages on its own and the stages overlap on consecutive batches: a cell's batch size is the
size of each micro-batch, and a training step pipelines ``num_microbatches`` of them
(``batch_size x num_microbatches`` samples per step). The report (see
:mod:`.schemes_report`) gives the time per step and samples/s per cell, the fastest scheme
per model and batch size, and one plot per model (time vs batch size, a line per scheme).
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
    check_pipeline_shape,
    check_positive_list,
    check_stages_fit,
    model_units,
)
from parnn.errors import ConfigError
from parnn.partition.schemes import SCHEMES

__all__ = [
    "DEFAULT_SCHEMES",
    "KIND",
    "SchemesSettings",
    "run_schemes_study",
    "schemes_cells",
    "schemes_spec",
]

KIND = "schemes"
DEFAULT_SCHEMES: tuple[str, ...] = (*SCHEMES, "auto")


@dataclass(kw_only=True, slots=True)
class SchemesSettings(RunSettings):
    """The sweep: models x batch sizes x schemes, on a fixed number of stages."""

    models: tuple[str, ...] = ("alexnet", "vgg16", "resnet50")
    """Models to partition (zoo names or user specs)."""
    batch_sizes: tuple[int, ...] = (2, 8)
    """Samples per micro-batch (the write-up's batch size; it used 1, 2, 4, 8, 16)."""
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    """Partitions to compare: scheme names, 'auto' or other balancers."""
    num_ranks: int = 4
    """Pipeline ranks (``--stages``; one process and one stage each)."""
    num_microbatches: int = 4
    """Micro-batches (batches) pipelined per training step."""
    steps: int = 1
    """Timed steps per repeat (one: 48 cells must fit in minutes)."""

    def __post_init__(self) -> None:
        self.check_run_settings()
        self.models = tuple(str(m) for m in self.models)
        if not self.models:
            raise ConfigError("no model given: e.g. --models alexnet,vgg16,resnet50")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"--models repeats a model: {', '.join(self.models)}")
        for model in self.models:
            check_model_name(model)
        self.batch_sizes = check_positive_list("--batch-sizes", self.batch_sizes, "--batch-sizes")
        self.schemes = tuple(str(s) for s in self.schemes)
        if not self.schemes:
            raise ConfigError(f"no scheme given: choose from {', '.join(PARTITION_NAMES)}")
        for scheme in self.schemes:
            if scheme not in PARTITION_NAMES:
                raise ConfigError(
                    f"unknown scheme {scheme!r} in --schemes: choose from "
                    f"{', '.join(PARTITION_NAMES)}"
                )
        if len(set(self.schemes)) != len(self.schemes):
            raise ConfigError(f"--schemes repeats a scheme: {', '.join(self.schemes)}")
        if self.num_ranks < 2:
            raise ConfigError(
                f"--stages {self.num_ranks}: comparing partitions needs at least 2 stages"
            )
        if self.num_microbatches < 1:
            raise ConfigError(f"--microbatches must be >= 1, got {self.num_microbatches}")

        check_pipeline_shape(self.schedule, [self.num_ranks], [self.num_microbatches])


def schemes_cells(settings: SchemesSettings) -> list[Cell]:
    """model-major, then batch size, then scheme: a model's plot fills up first."""
    return [
        Cell({"model": model, "batch_size": batch_size, "scheme": scheme})
        for model in settings.models
        for batch_size in settings.batch_sizes
        for scheme in settings.schemes
    ]


def schemes_spec(settings: SchemesSettings, cell: Cell) -> RunSpec:
    m = settings.num_microbatches
    return RunSpec(
        model=str(cell.key["model"]),
        input_shape=settings.input_shape,
        num_classes=SYNTHETIC_CLASSES,
        batch_size=int(cell.key["batch_size"]) * m,
        num_microbatches=m,
        num_ranks=settings.num_ranks,
        partition=str(cell.key["scheme"]),
        schedule=settings.schedule,
        steps=settings.steps,
        warmup_steps=settings.warmup_steps,
        threads=settings.threads,
        seed=settings.seed,
    )


def run_schemes_study(
    settings: SchemesSettings,
    directory: str | Path,
    *,
    measure: Measure,
    predict: Predict | None = None,
    quiet: bool = False,
    render: bool = True,
    cluster: Any = None,
) -> StudyOutcome:
    """Run (or resume) the schemes study in ``directory`` and render its report."""
    from parnn.bench.studies.schemes_report import build_schemes_report

    for model in settings.models:
        units = model_units(model, settings.input_shape, SYNTHETIC_CLASSES)
        check_stages_fit(model, [settings.num_ranks], units)
    return run_study(
        KIND,
        settings,
        schemes_cells(settings),
        lambda cell: schemes_spec(settings, cell),
        directory,
        measure=measure,
        predict=predict,
        quiet=quiet,
        render=render,
        report=build_schemes_report,
        cluster=cluster,
    )
