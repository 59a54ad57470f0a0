"""The demo as a study: LeNet-5 on the digits bundled with scikit-learn (resized to
1x28x28) as a 2-stage pipeline (1F1B, batch 256 in 4 micro-batches of 64), one pinned
process per stage, under every named layer-distribution scheme and the cost-aware
``auto`` partition, side by side with the single-process reference trainer.

    payload = run_demo(DemoSettings(epochs=3), "runs/demo")

Its cells are the reference run and one pipeline run per distinct partition (schemes
that give the same partition share one run), recorded in the study's store
(``study.json``, ``cells.jsonl``: :class:`~parnn.bench.cells.StudyStore`); the report
(:mod:`.demo_report`: ``report.md``, ``report.html``, ``demo.png``) and ``demo.json`` (the
``parnn demo --json`` object plus the machine facts) are rendered from them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parnn.bench.cells import Cell, StudyStore
from parnn.bench.report import render_study
from parnn.bench.studies.demo_report import (
    REFERENCE,
    RESULTS_FILE,
    build_demo_report,
    demo_payload,
)
from parnn.errors import ConfigError
from parnn.results import write_json

if TYPE_CHECKING:
    from parnn.partition import Partition

__all__ = [
    "BATCH_SIZE",
    "DEMO_DATA",
    "DEMO_MODEL",
    "KIND",
    "MICROBATCHES",
    "SCHEDULE",
    "STAGES",
    "DemoSettings",
    "run_demo",
]

KIND = "demo"
DEMO_MODEL = "lenet5"
DEMO_DATA = "digits"
STAGES = 2
BATCH_SIZE = 256
MICROBATCHES = 4
SCHEDULE = "1f1b"
LR = 0.01
EPOCHS = 8


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What a user may change; the rest is the demo's fixed setup (the constants above)."""

    epochs: int = EPOCHS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs {self.epochs} must be >= 1, e.g. --epochs 3")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": DEMO_MODEL,
            "data": DEMO_DATA,
            "stages": STAGES,
            "batch_size": BATCH_SIZE,
            "microbatches": MICROBATCHES,
            "schedule": SCHEDULE,
            "lr": LR,
            **asdict(self),
        }


def _reference_rate(result: Any) -> float:
    """Median samples/s of the reference trainer's steps after the first two, the way the
    pipeline measures itself (so start-up is left out of both)."""
    times = [record.wall_s for record in result.step_log]
    durations = sorted(b - a for a, b in zip(times[2:], times[3:], strict=False))
    if not durations:
        return float(result.samples_per_s)
    return BATCH_SIZE / durations[len(durations) // 2]


def _partitions() -> dict[str, Partition]:
    """Every named scheme and ``auto``, resolved for the demo's pipeline."""
    from parnn.partition import SCHEMES
    from parnn.partition.measure.cache import default_cache_dir
    from parnn.partition.measure.resolve import resolve_partition

    return {
        method: resolve_partition(
            method,
            model=DEMO_MODEL,
            num_stages=STAGES,
            batch_size=BATCH_SIZE,
            num_microbatches=MICROBATCHES,
            input_shape=(1, 28, 28),
            num_classes=10,
            cache_dir=default_cache_dir(),
        )
        for method in [*SCHEMES, "auto"]
    }


def _measure(settings: DemoSettings, out: Path, partitions: dict[str, Partition]) -> Any:
    """The measure function of the demo's cells."""
    from parnn.pipeline import PipelineConfig, run_pipeline
    from parnn.train import OptimizerConfig, TrainConfig, train
    from parnn.train.setup import setup_training

    optimizer = OptimizerConfig(name="adam", lr=LR)
    by_counts = {"|".join(map(str, p.counts)): p for p in partitions.values()}

    def measure(cell: Cell) -> dict[str, Any]:
        if cell.key["run"] == REFERENCE:
            setup = setup_training(DEMO_MODEL, DEMO_DATA, seed=settings.seed)
            reference = train(
                setup.model,
                setup.train_data,
                setup.val_data,
                TrainConfig(epochs=settings.epochs, batch_size=BATCH_SIZE, optimizer=optimizer,
                            lr_schedule="constant", seed=settings.seed, threads=1,
                            drop_last=True),
                quiet=True,
            )  # fmt: skip
            return {
                "samples_per_s": _reference_rate(reference),
                "val_accuracy": reference.final.accuracy if reference.final else None,
            }
        partition = by_counts[cell.key["units"]]
        result = run_pipeline(
            PipelineConfig(
                model=DEMO_MODEL,
                data=DEMO_DATA,
                num_ranks=STAGES,
                partition=partition,
                schedule=SCHEDULE,
                num_microbatches=MICROBATCHES,
                batch_size=BATCH_SIZE,
                epochs=settings.epochs,
                optimizer=optimizer,
                seed=settings.seed,
                out_dir=out / f"partition-{'-'.join(map(str, partition.counts))}",
            ),
            quiet=True,
        )
        assert result is not None  # None only under torchrun
        return {
            "partition": list(partition.boundaries),
            "units_per_stage": list(partition.counts),
            "samples_per_s": result.samples_per_s,
            "step_time_s": result.step_time_s,
            "bubble_fraction": result.bubble_fraction,
            "val_accuracy": result.val_accuracy,
            "stage_compute_s": [stage.compute_s for stage in result.stages],
        }

    return measure


def run_demo(
    settings: DemoSettings, out: str | Path, *, quiet: bool = False, fresh: bool = False
) -> dict[str, Any]:
    """Run (or resume) the demo in ``out``, render its report and ``demo.json``; return the
    ``parnn demo --json`` object. ``fresh`` discards an earlier demo's cells there."""
    from parnn.launch.forkserver import start_forkserver

    # The ranks' fork server imports torch, the pipeline and the digits loader while this
    # process plans and trains the reference; every run's ranks fork with all that loaded.
    start_forkserver(["parnn.pipeline.worker", "parnn.data.digits"])
    from parnn.results import machine_facts

    out = Path(out)
    store = StudyStore(out)
    if fresh:
        store.clear()
    partitions = _partitions()
    schemes: dict[str, list[str]] = {}
    for method, partition in partitions.items():
        schemes.setdefault("|".join(map(str, partition.counts)), []).append(method)
    # The schemes' partitions are part of the settings: an `auto` that resolves to another
    # cut on a resume is a different study, refused rather than mixed.
    header = store.open(KIND, {**settings.to_dict(), "schemes": list(partitions),
                               "partitions": {m: list(p.boundaries)
                                              for m, p in partitions.items()}})  # fmt: skip
    cells = [Cell({"run": REFERENCE, "units": "", "schemes": ""})]
    cells += [Cell({"run": "pipeline", "units": units, "schemes": ",".join(names)})
              for units, names in schemes.items()]  # fmt: skip
    started = time.perf_counter()
    records = store.run(
        cells, _measure(settings, out, partitions), description="demo runs", quiet=quiet
    )
    render_study(out, build_demo_report)
    payload = demo_payload(header["settings"], records, out)
    payload["wall_s"] = time.perf_counter() - started
    write_json(out / RESULTS_FILE, {**payload, "machine": machine_facts()})
    return payload
