"""The axes of parallelism side by side: one model, one dataset, the same cores and the same
training (seed, initial weights, data order, optimizer, epochs), run serially, data-parallel
and pipeline-parallel, then one table (:class:`AxesResult`);
:mod:`parnn.bench.studies.axes_report` draws the conclusion its numbers support and the
throughput plot.

Every variant runs on an existing engine: serial, ddp, hogwild, local-sgd and mpi through
:func:`~parnn.data_parallel.run_data_parallel`, the pipeline through
:func:`~parnn.pipeline.run_pipeline`. What is measured, and how:

- *samples/s*: the pipeline engine reports the mini-batch over the median step time after
  ``WARMUP_STEPS`` steps; the data-parallel engines' loss curves give the same measure
  (samples of a step over the median step time, a step of Hogwild being one update of each
  worker), so every row uses one basis. The data-parallel engines' own mean over the whole
  training (``samples / train_s``) is kept as ``mean_samples_per_s``.
- *peak RSS per process*: ``ru_maxrss`` of each worker process (``RUSAGE_SELF``), read by
  the engines at the end of training; the pipeline's rank 0 also holds the dataset and
  evaluates the gathered model.
- *accuracy*: the trained model on the same held-out split.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parnn.bench.cells import RENAMED_SETTINGS, Cell, StudyStore, renamed_fields
from parnn.data_parallel.config import DataParallelConfig
from parnn.errors import ConfigError
from parnn.results import machine_facts
from parnn.train import SCHEDULES, OptimizerConfig

if TYPE_CHECKING:  # the engines are imported when a comparison runs: `--help` stays light
    from parnn.data_parallel.result import DataParallelResult, LossCurve
    from parnn.pipeline import PipelineConfig, PipelineResult

__all__ = [
    "AXES",
    "DEFAULT_VARIANTS",
    "VARIANTS",
    "AxesConfig",
    "AxesResult",
    "KIND",
    "VariantRun",
    "axes_result",
    "median_step_rate",
    "parse_variants",
    "run_axes",
]

VARIANTS = ("serial", "serial-threads", "ddp", "hogwild", "local-sgd", "mpi", "pipeline")
DEFAULT_VARIANTS = ("serial", "serial-threads", "ddp", "hogwild", "pipeline")
AXES = {
    "serial": "none",
    "serial-threads": "threads",
    "ddp": "data",
    "hogwild": "data",
    "local-sgd": "data",
    "mpi": "data",
    "pipeline": "pipeline",
}
"""The axis of parallelism each variant uses."""
WARMUP_STEPS = 2
"""Steps left out of the median step time (the pipeline engine's default)."""


def parse_variants(text: str) -> tuple[str, ...]:
    """'ddp,pipeline' -> the variants, checked; serial (the baseline) always comes first."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if not names or unknown:
        raise ConfigError(
            f"bad --engines list {text!r}: unknown {', '.join(unknown) or 'nothing given'}; "
            f"choose from {', '.join(VARIANTS)}, e.g. --engines {','.join(DEFAULT_VARIANTS)}"
        )
    return tuple(dict.fromkeys(["serial", *names]))


@dataclass(kw_only=True, slots=True)
class AxesConfig:
    """One comparison: the training every variant shares, and the pipeline's own settings."""

    model: str = "lenet5"
    """Zoo name or user model spec."""
    data: str = "digits"
    """Dataset name (digits, mnist, cifar10, synthetic)."""
    data_dir: Path | None = None
    """Directory of the dataset files (mnist, cifar10)."""
    input_shape: tuple[int, ...] | None = None
    """Sample shape (C, H, W); default: the dataset's own (digits: 1x28x28)."""
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    """Which variants to run (see ``VARIANTS``); serial is always run first."""
    num_ranks: int = 2
    """Cores used by every parallel variant: ranks of ddp/hogwild/local-sgd/mpi and of the
    pipeline (one pinned core each), intra-op threads of serial-threads."""
    batch_size: int = 64
    """Samples per optimizer step (global batch; Hogwild: per worker update)."""
    epochs: int = 5
    """Passes over the training data (used when ``steps`` is None)."""
    steps: int | None = None
    """Optimizer updates of the serial run; Hogwild runs steps / ranks rounds."""
    optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(name="sgd", lr=0.05, momentum=0.5)
    )
    """The optimizer of every variant."""
    lr_schedule: str = "constant"
    """LR schedule of every variant, stepped once per optimizer step."""
    seed: int = 0
    """Seeds the weights, the split and the data order of every variant."""
    val_fraction: float = 0.2
    """Held-out share of the data."""
    schedule: str = "gpipe"
    """Pipeline schedule (see `parnn schedules`)."""
    num_microbatches: int = 4
    """Pipeline micro-batches per mini-batch."""
    partition: str = "equal-load"
    """Pipeline partition: boundaries, unit counts, a scheme or a method."""

    def __post_init__(self) -> None:
        self.variants = parse_variants(",".join(self.variants))
        if self.num_ranks < 2:
            raise ConfigError(
                f"ranks {self.num_ranks}: the parallel variants need at least 2 "
                "cores to compare against serial; use --ranks 2 or more"
            )
        if self.steps is not None and self.steps < self.num_ranks:
            raise ConfigError(
                f"steps {self.steps} must be >= {self.num_ranks} ranks (Hogwild runs "
                f"steps / ranks rounds); use --steps {self.num_ranks} or more"
            )
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown LR schedule {self.lr_schedule!r}: choose one of {', '.join(SCHEDULES)}"
            )
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)

    def data_parallel_config(self, variant: str) -> DataParallelConfig:
        """The engine config of a data-parallel or serial variant (validated)."""
        ranks = 1 if variant.startswith("serial") else self.num_ranks
        steps = self.steps
        if steps is not None and variant == "hogwild":
            steps = steps // self.num_ranks  # rounds: each worker updates once per round
        return DataParallelConfig.of(
            engine="serial" if variant.startswith("serial") else variant,
            num_ranks=ranks,
            threads=self.num_ranks if variant == "serial-threads" else 1,
            batch_size=self.batch_size,
            epochs=self.epochs,
            steps=steps,
            optimizer=self.optimizer,
            lr_schedule=self.lr_schedule,
            seed=self.seed,
            drop_last=True,  # the pipeline drops the last, incomplete batch too
        )

    def pipeline_config(self) -> PipelineConfig:
        from parnn.pipeline import PipelineConfig

        return PipelineConfig.of(
            model=self.model,
            data=self.data,
            data_dir=self.data_dir,
            input_shape=self.input_shape,
            num_ranks=self.num_ranks,
            partition=self.partition,
            schedule=self.schedule,
            num_microbatches=self.num_microbatches,
            batch_size=self.batch_size,
            epochs=self.epochs,
            steps=self.steps,
            optimizer=self.optimizer,
            lr_schedule=self.lr_schedule,
            seed=self.seed,
            val_fraction=self.val_fraction,
            measure_warmup_steps=WARMUP_STEPS,
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AxesConfig:
        """The config of :meth:`to_dict` (as a study's stored settings hold it)."""
        values = {RENAMED_SETTINGS.get(key, key): value for key, value in values.items()}
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        known["optimizer"] = OptimizerConfig(**known["optimizer"])
        known["variants"] = tuple(known["variants"])
        if known.get("input_shape") is not None:
            known["input_shape"] = tuple(known["input_shape"])
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values["variants"] = list(self.variants)
        values["data_dir"] = None if self.data_dir is None else str(self.data_dir)
        values["input_shape"] = None if self.input_shape is None else list(self.input_shape)
        values["optimizer"] = self.optimizer.to_dict()
        return values


def median_step_rate(curve: LossCurve, *, points_per_step: int, warmup_steps: int) -> float:
    """Samples/s of the median step after ``warmup_steps``: the samples of each run of
    ``points_per_step`` consecutive curve points over the seconds it took (0 when empty)."""
    times = [0.0, *curve.time_s]  # seconds since training began, at each point's end
    seen = [0, *curve.samples]
    steps = len(curve) // points_per_step
    first = min(warmup_steps, max(0, steps - 1)) * points_per_step
    rates = []
    for start in range(first, len(times) - points_per_step):
        elapsed = times[start + points_per_step] - times[start]
        if elapsed > 0:
            rates.append((seen[start + points_per_step] - seen[start]) / elapsed)
    return statistics.median(rates) if rates else 0.0


@dataclass(kw_only=True, slots=True)
class VariantRun:
    """One variant's measurements, on the common basis (see the module docstring)."""

    variant: str
    label: str
    ranks: int
    """Processes of the variant (1 for serial and serial-threads)."""
    threads: int
    """Intra-op threads of each process."""
    samples_per_s: float
    mean_samples_per_s: float | None
    accuracy: float | None
    peak_rss_mib_per_rank: list[float]
    steps: int
    samples: int
    wall_s: float
    bubble_fraction: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """The engine's full result (``to_dict()``)."""

    @property
    def cores(self) -> int:
        return self.ranks * self.threads

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> VariantRun:
        """The run of a study record (its fields, as :func:`run_axes` stores them; a record
        written before the renames is read under today's names: :func:`renamed_fields`)."""
        values = renamed_fields(record)
        return cls(**{item.name: values[item.name] for item in fields(cls)})

    @classmethod
    def from_data_parallel(cls, variant: str, result: DataParallelResult) -> VariantRun:
        config = result.config
        return cls(
            variant=variant,
            label=result.label,
            ranks=config.num_ranks,
            threads=config.threads,
            samples_per_s=median_step_rate(
                result.curve,
                points_per_step=config.num_ranks if config.engine == "hogwild" else 1,
                warmup_steps=WARMUP_STEPS,
            ),
            mean_samples_per_s=result.samples_per_s,
            accuracy=result.val.accuracy if result.val is not None else None,
            peak_rss_mib_per_rank=[float(rank["peak_rss_mib"]) for rank in result.ranks],
            steps=result.updates,
            samples=result.samples,
            wall_s=result.wall_s,
            details=result.to_dict(),
        )

    @classmethod
    def from_pipeline(cls, config: PipelineConfig, result: PipelineResult) -> VariantRun:
        by_rank = {stage.rank: stage.peak_rss_mib for stage in result.stages}
        return cls(
            variant="pipeline",
            label=f"pipeline x{result.world_size}",
            ranks=result.world_size,
            threads=config.threads,
            samples_per_s=result.samples_per_s,
            mean_samples_per_s=result.samples / result.train_s if result.train_s else None,
            accuracy=result.val_accuracy,
            peak_rss_mib_per_rank=[round(by_rank[rank], 1) for rank in sorted(by_rank)],
            steps=result.steps,
            samples=result.samples,
            wall_s=result.wall_s,
            bubble_fraction=result.bubble_fraction,
            details=result.to_dict(),
        )


@dataclass(kw_only=True, slots=True)
class AxesResult:
    """All variants of one comparison, serial first."""

    config: AxesConfig
    runs: list[VariantRun]
    train_samples: int
    val_samples: int
    parameters: int
    machine: dict[str, Any] = field(default_factory=machine_facts)

    @property
    def baseline(self) -> VariantRun:
        return self.runs[0]

    def rows(self) -> list[dict[str, Any]]:
        """The table: one row per variant."""
        base = self.baseline
        rows = []
        for run in self.runs:
            speedup = run.samples_per_s / base.samples_per_s if base.samples_per_s > 0 else None
            rows.append(
                {
                    "variant": run.variant,
                    "label": run.label,
                    "axis": AXES[run.variant],
                    "ranks": run.ranks,
                    "threads": run.threads,
                    "samples_per_s": round(run.samples_per_s, 1),
                    "speedup_vs_serial": round(speedup, 3) if speedup is not None else None,
                    "efficiency": round(speedup / run.cores, 3) if speedup is not None else None,
                    "mean_samples_per_s": (
                        round(run.mean_samples_per_s, 1)
                        if run.mean_samples_per_s is not None
                        else None
                    ),
                    "accuracy": run.accuracy,
                    "accuracy_delta_points": (
                        round(100 * (run.accuracy - base.accuracy), 2)
                        if run.accuracy is not None and base.accuracy is not None
                        else None
                    ),
                    "peak_rss_mib": max(run.peak_rss_mib_per_rank),
                    "peak_rss_mib_per_rank": run.peak_rss_mib_per_rank,
                    "total_rss_mib": round(sum(run.peak_rss_mib_per_rank), 1),
                    "steps": run.steps,
                    "samples": run.samples,
                    "wall_s": round(run.wall_s, 2),
                    "bubble_fraction": (
                        round(run.bubble_fraction, 3) if run.bubble_fraction is not None else None
                    ),
                }
            )
        return rows

    def to_dict(self, *, details: bool = False) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.config.model,
            "data": self.config.data,
            "train_samples": self.train_samples,
            "val_samples": self.val_samples,
            "parameters": self.parameters,
            "settings": self.config.to_dict(),
            "rows": self.rows(),
            "machine": self.machine,
        }
        if details:
            payload["runs"] = {run.variant: run.details for run in self.runs}
        return payload


KIND = "axes"


def run_axes(
    config: AxesConfig,
    *,
    quiet: bool = False,
    on_run: Callable[[VariantRun], None] | None = None,
    out: str | Path | None = None,
) -> AxesResult:
    """Run every variant of ``config`` one after the other (each on all its cores).

    With ``out``, each variant is a cell of the study's store there (``study.json``,
    ``cells.jsonl``), recorded as soon as it finishes; a variant already recorded with the
    same settings is not run again, and ``parnn report DIR`` renders the study."""
    from parnn.data_parallel.runner import run_data_parallel
    from parnn.pipeline import plan_pipeline_run, run_pipeline
    from parnn.train.setup import setup_training

    # Validate every variant's settings before the first process starts.
    dp_configs = {
        variant: config.data_parallel_config(variant)
        for variant in config.variants
        if variant != "pipeline"
    }
    pipeline_config = config.pipeline_config() if "pipeline" in config.variants else None
    if pipeline_config is not None:
        plan_pipeline_run(pipeline_config)
    setup = setup_training(
        config.model, config.data, data_dir=config.data_dir, input_shape=config.input_shape,
        seed=config.seed, val_fraction=config.val_fraction,
    )  # fmt: skip
    store = StudyStore(out) if out is not None else None
    finished: dict[str, VariantRun] = {}
    if store is not None:
        store.open(KIND, {**config.to_dict(), **_data_facts(setup)})
        finished = {r["key"]["variant"]: VariantRun.from_record(r) for r in store.records()}
    runs: list[VariantRun] = []
    for variant in config.variants:
        if variant in finished:
            run = finished[variant]
        elif variant == "pipeline":
            assert pipeline_config is not None
            # The pipeline's rank 0 loads the same data and seeds the same initial weights.
            pipeline_result = run_pipeline(pipeline_config, quiet=quiet)
            if pipeline_result is None:  # pragma: no cover - only under torchrun
                raise ConfigError("study axes starts its own processes: run it without torchrun")
            run = VariantRun.from_pipeline(pipeline_config, pipeline_result)
        else:
            result = run_data_parallel(
                copy.deepcopy(setup.model), setup.train_data, setup.val_data,
                dp_configs[variant], model_name=setup.model_name, data_name=setup.data_name,
                quiet=quiet,
            )  # fmt: skip
            if result is None:  # pragma: no cover - only under an external launcher
                raise ConfigError("study axes starts its own processes: run it without mpirun")
            run = VariantRun.from_data_parallel(variant, result)
        if store is not None and variant not in finished:
            store.add(Cell({"variant": variant}), asdict(run))
        runs.append(run)
        if on_run is not None:
            on_run(run)
    return AxesResult(config=config, runs=runs, **_data_facts(setup))


def _data_facts(setup: Any) -> dict[str, Any]:
    return {
        "train_samples": len(setup.train_data),
        "val_samples": len(setup.val_data),
        "parameters": setup.num_parameters,
    }


def axes_result(settings: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                machine: Mapping[str, Any]) -> AxesResult:  # fmt: skip
    """The comparison of a study's stored settings and records (variants in run order)."""
    config = AxesConfig.from_dict(settings)
    by_variant = {r["key"]["variant"]: VariantRun.from_record(r) for r in records}
    return AxesResult(
        config=config,
        runs=[by_variant[v] for v in config.variants if v in by_variant],
        train_samples=int(settings["train_samples"]),
        val_samples=int(settings["val_samples"]),
        parameters=int(settings["parameters"]),
        machine=dict(machine),
    )
