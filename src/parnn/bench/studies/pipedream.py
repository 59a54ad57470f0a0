"""The PipeDream study: the asynchronous pipeline against the synchronous schedules, in
throughput and in statistical efficiency (``parnn study pipedream``,
``benchmarks/pipedream/``).

1. Throughput: the same model, partition (the profile-balanced ``time`` one, from the
   profile cache, so that the prediction below prices the same partition), batch and
   micro-batch size (8) trained with ``gpipe``, ``1f1b`` and ``pipedream`` on ``k`` stages,
   ``m`` micro-batches a mini-batch (``microbatches``; 1F1B's flush costs it about
   ``(k - 1) / (m + k - 1)`` of a step, what an asynchronous pipeline can win back);
   LeNet-5 on MNIST (or the bundled digits) and a VGG-style CNN on CIFAR-shaped synthetic
   data. Per run: the median step time after warm-up (pipedream: the period between two
   updates of the first stage, the steady state), the bubble fraction, samples over the
   whole training time; repeats rotate the order of the schedules and the ratio pipedream /
   1f1b is taken per repeat, with the 1-minute load average beside every run.
2. Prediction: the simulator's steady-state step of each schedule on the profiled costs.
3. Statistical efficiency: LeNet-5 trained for the same epochs with ``1f1b``, ``pipedream``
   and ``pipedream`` with vertical sync on 2 stages; validation accuracy after every epoch
   against training time and samples seen; the time to the target accuracy.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from parnn.bench.cells import Cell, StudyStore, measure_timed
from parnn.bench.report import render_study
from parnn.bench.studies.pipedream_report import (
    DEFAULT_MICROBATCHES,
    KIND,
    SCHEDULES,
    SIDES,
    build_pipedream_report,
    key_microbatches,
    pipedream_payload,
)
from parnn.errors import ConfigError
from parnn.partition import Partition
from parnn.partition.measure.cache import default_cache_dir
from parnn.pipeline import PipelineConfig, plan_pipeline_run, run_pipeline
from parnn.results import machine_facts, write_json
from parnn.train import OptimizerConfig

__all__ = [
    "PARTS",
    "RESULT_FILE",
    "PipeDreamStudyConfig",
    "build_vgg_cifar",
    "run_pipedream_study",
    "study_cells",
]

OPTIMIZER = OptimizerConfig(name="adam", lr=0.003)
RESULT_FILE = "pipedream.json"
VGG = "parnn.bench.studies.pipedream:build_vgg_cifar"
PARTS = ("throughput", "predict", "accuracy")
MICROBATCH_SIZE = 8
"""Samples of one micro-batch in every cell: a mini-batch of m micro-batches is 8 m."""
Report = Callable[[str], None]


def build_vgg_cifar(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """A VGG-style CNN for CIFAR-shaped inputs: three blocks of two 3x3 convolutions with a
    max pool after each block, then two linear layers; eight units, no batch norm or
    dropout (a pipelined run is deterministic)."""
    channels, height, width = input_shape

    def conv(cin: int, cout: int, pool: bool) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
        return nn.Sequential(*layers)

    return nn.Sequential(
        OrderedDict(
            conv1=conv(channels, 32, pool=False),
            conv2=conv(32, 32, pool=True),  # (32, H/2, W/2)
            conv3=conv(32, 64, pool=False),
            conv4=conv(64, 64, pool=True),  # (64, H/4, W/4)
            conv5=conv(64, 128, pool=False),
            conv6=conv(128, 128, pool=True),  # (128, H/8, W/8)
            fc1=nn.Sequential(
                nn.Flatten(), nn.Linear(128 * (height // 8) * (width // 8), 256), nn.ReLU()
            ),
            fc2=nn.Linear(256, num_classes),
        )
    )


@dataclass(kw_only=True, slots=True)
class PipeDreamStudyConfig:
    """What the PipeDream study runs."""

    data_dir: Path | None = None
    """MNIST files for LeNet-5; None: the bundled digits."""
    stages: tuple[int, ...] = (2,)
    """Pipeline depths of the throughput part (more than the cores: oversubscribed)."""
    repeats: int = 3
    """Throughput repeats per schedule (the order rotates)."""
    steps: int = 40
    """Optimizer steps per throughput run."""
    epochs: int = 6
    """Epochs of every accuracy run."""
    target_accuracy: float = 0.97
    """Validation accuracy whose time-to-reach is compared."""
    lr_schedule: str = "cosine"
    """LR schedule of the accuracy runs (Adam, lr 0.003): cosine decays to 0 over the run, so
    the final accuracy is the converged one, not one epoch's fluctuation."""
    models: tuple[str, ...] = ("lenet5", "vgg-cifar")
    """Throughput cells: lenet5, vgg-cifar."""
    microbatches: tuple[int, ...] = (DEFAULT_MICROBATCHES,)
    """Micro-batches a mini-batch in the throughput and prediction cells (of 8 samples
    each, so the batch is 8 m); the accuracy runs take 4 (batch 32)."""
    parts: tuple[str, ...] = PARTS
    """Which of throughput, predict, accuracy to run."""

    def __post_init__(self) -> None:
        for name in ("repeats", "steps", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.microbatches or min(self.microbatches) < 1:
            raise ConfigError(f"microbatches {self.microbatches}: each must be >= 1, e.g. 2,4")
        if not self.stages or min(self.stages) < 2:
            raise ConfigError(f"stages {self.stages}: every pipeline needs >= 2 stages")
        unknown = set(self.models) - {"lenet5", "vgg-cifar"}
        if unknown:
            raise ConfigError(f"unknown models {sorted(unknown)}: choose lenet5, vgg-cifar")
        unknown = set(self.parts) - set(PARTS)
        if unknown:
            raise ConfigError(f"unknown parts {sorted(unknown)}: choose {', '.join(PARTS)}")
        if not 0.0 < self.target_accuracy <= 1.0:
            raise ConfigError(f"target accuracy {self.target_accuracy} must be in (0, 1]")
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)

    def to_settings(self) -> dict[str, Any]:
        """The settings as JSON holds them (the study's stored settings)."""
        return {
            name: str(value)
            if isinstance(value, Path)
            else list(value)
            if isinstance(value, tuple)
            else value
            for name, value in ((n, getattr(self, n)) for n in self.__dataclass_fields__)
        }


@dataclass(frozen=True, slots=True)
class Workload:
    """One model/data setting whose schedules are compared."""

    label: str
    model: str
    data: str
    input_shape: tuple[int, int, int] | None
    num_samples: int | None
    batch_size: int = DEFAULT_MICROBATCHES * MICROBATCH_SIZE
    num_microbatches: int = DEFAULT_MICROBATCHES


def _workloads(data_dir: Path | None, microbatches: int = DEFAULT_MICROBATCHES) -> list[Workload]:
    mnist = "mnist" if data_dir is not None else "digits"
    m = {"batch_size": MICROBATCH_SIZE * microbatches, "num_microbatches": microbatches}
    return [
        Workload("lenet5 " + mnist, "lenet5", mnist, None, None, **m),
        Workload("vgg-cifar synthetic", VGG, "synthetic", (3, 32, 32), 2048, **m),
    ]


def _config(
    cell: Workload, schedule: str, stages: int, partition: Any, **kw: Any
) -> PipelineConfig:
    return PipelineConfig.of(
        model=cell.model,
        data=cell.data,
        data_dir=kw.pop("data_dir", None),
        input_shape=cell.input_shape,
        num_samples=cell.num_samples,
        num_ranks=stages,
        schedule=schedule,
        partition=partition,
        batch_size=cell.batch_size,
        num_microbatches=cell.num_microbatches,
        optimizer=OPTIMIZER,
        **kw,
    )


def _throughput_run(
    cell: Workload,
    schedule: str,
    stages: int,
    partition: Partition,
    steps: int,
    data_dir: Path | None,
) -> dict[str, Any]:
    run_config = _config(
        cell,
        schedule,
        stages,
        partition,
        data_dir=data_dir,
        steps=steps,
        evaluate=False,
        measure_warmup_steps=max(2, stages),
    )
    result = run_pipeline(run_config, quiet=True)
    assert result is not None
    return {
        "schedule": schedule,
        "step_time_s": result.step_time_s,
        "samples_per_s": result.samples_per_s,
        "train_samples_per_s": result.samples / result.train_s,
        "bubble_fraction": result.bubble_fraction,
        "stage_compute_s": [s.compute_s for s in result.stages],
        "weight_stash": result.weight_stash,
        "load_1m": os.getloadavg()[0],
    }


def _partition(config: PipeDreamStudyConfig, cell: Workload, stages: int) -> Partition:
    """The profile-balanced ("time") partition every schedule of ``cell`` runs on
    ``stages``, from the profile cache."""
    return plan_pipeline_run(
        _config(cell, "1f1b", stages, "time", data_dir=config.data_dir),
        profile_cache_dir=default_cache_dir(),
    ).partition


def _predict(config: PipeDreamStudyConfig, cell: Workload, stages: int) -> dict[str, Any]:
    """The simulator's steady-state step of every schedule on the profiled stage costs of
    the same partition: the noise-free expectation beside the measurement."""
    from parnn.partition.measure.resolve import ProfileConfig, ProfileSource, resolve_plan

    plan = plan_pipeline_run(
        _config(cell, "1f1b", stages, "time", data_dir=config.data_dir),
        profile_cache_dir=default_cache_dir(),
    )
    source = ProfileSource(
        ProfileConfig(
            model=cell.model,
            input_shape=plan.input_shape,
            num_classes=10,
            cache_dir=default_cache_dir(),
        )
    )
    predicted = {}
    for schedule in SCHEDULES:
        chosen = resolve_plan(
            plan.partition,
            source=source,
            num_stages=stages,
            batch_size=cell.batch_size,
            num_microbatches=cell.num_microbatches,
            schedule=schedule,
        ).chosen
        predicted[schedule] = {
            "step_time_s": chosen.step_time_s,
            "samples_per_s": cell.batch_size / chosen.step_time_s,
            "bubble_fraction": chosen.simulation.bubble_fraction,
        }
    return {"partition": list(plan.partition.boundaries), "predicted": predicted}


def _accuracy_run(
    config: PipeDreamStudyConfig, cell: Workload, side: str, partition: Partition
) -> dict[str, Any]:
    """Validation accuracy per epoch against training time and samples of one side."""
    schedule, vertical = side.split()[0], side.endswith("+vsync")
    run_config = _config(
        cell,
        schedule,
        2,
        partition,
        data_dir=config.data_dir,
        epochs=config.epochs,
        vertical_sync=vertical,
        lr_schedule=config.lr_schedule,
    )
    result = run_pipeline(run_config, quiet=True)
    assert result is not None
    points = [
        {
            "epoch": h["epoch"],
            "samples": h["step"] * cell.batch_size,
            "train_s": h["train_s"],
            "val_accuracy": h["val_accuracy"],
        }
        for h in result.history
    ]
    reached = next((p for p in points if p["val_accuracy"] >= config.target_accuracy), None)
    return {
        "label": cell.label,
        "partition": list(partition.boundaries),
        "points": points,
        "final_accuracy": points[-1]["val_accuracy"],
        "time_to_target_s": None if reached is None else reached["train_s"],
        "epochs_to_target": None if reached is None else reached["epoch"],
        "load_1m": os.getloadavg()[0],
    }


def study_cells(config: PipeDreamStudyConfig) -> list[Cell]:
    """The study's cells in the order they run: each prediction (model, stages), each
    throughput run (model, stages, repeat, schedule; the schedules' order rotates with the
    repeat), each side of the accuracy part."""
    models = [c.label for c in _workloads(config.data_dir) if c.label.split()[0] in config.models]
    cells = []
    if "predict" in config.parts:
        cells += [
            Cell(_key({"part": "predict", "model": model, "stages": k}, m))
            for model in models
            for k in config.stages
            for m in config.microbatches
        ]
    if "throughput" in config.parts:
        for model in models:
            for stages in config.stages:
                for m in config.microbatches:
                    for repeat in range(config.repeats):
                        order = SCHEDULES[repeat % 3 :] + SCHEDULES[: repeat % 3]
                        cells += [
                            Cell(_key({"part": "throughput", "model": model, "stages": stages,
                                       "repeat": repeat, "schedule": schedule}, m))
                            for schedule in order
                        ]  # fmt: skip
    if "accuracy" in config.parts:
        cells += [Cell({"part": "accuracy", "side": side}) for side in SIDES]
    return cells


def _key(key: dict[str, Any], microbatches: int) -> dict[str, Any]:
    """A cell's key; the default count is left out (so that the cells of a store made
    before there was a choice keep their ids)."""
    return key if microbatches == DEFAULT_MICROBATCHES else {**key, "microbatches": microbatches}


def _measure(config: PipeDreamStudyConfig, say: Report) -> Callable[[Cell], dict[str, Any]]:
    workloads = {
        (c.label, m): c
        for m in (DEFAULT_MICROBATCHES, *config.microbatches)
        for c in _workloads(config.data_dir, m)
    }
    partitions: dict[tuple[str, int, int], Partition] = {}

    def partition(label: str, stages: int, m: int = DEFAULT_MICROBATCHES) -> Partition:
        if (label, stages, m) not in partitions:
            partitions[label, stages, m] = _partition(config, workloads[label, m], stages)
        return partitions[label, stages, m]

    def measure(cell: Cell) -> dict[str, Any]:
        key = cell.key
        m = key_microbatches(key)
        if key["part"] == "predict":
            measured = _predict(config, workloads[key["model"], m], key["stages"])
            predicted = measured["predicted"]
            say(
                f"{key['model']} k={key['stages']} m={m} predicted: "
                + ", ".join(
                    f"{s} {p['samples_per_s']:,.0f}/s bubble {100 * p['bubble_fraction']:.0f}%"
                    for s, p in predicted.items()
                )
                + f"; pipedream/1f1b "
                f"{predicted['1f1b']['step_time_s'] / predicted['pipedream']['step_time_s']:.2f}x",
            )
            return measured
        if key["part"] == "throughput":
            label, stages, schedule = key["model"], key["stages"], key["schedule"]
            cut = partition(label, stages, m)
            run = _throughput_run(
                workloads[label, m], schedule, stages, cut, config.steps, config.data_dir
            )
            say(
                f"{label} k={stages} m={m} r{key['repeat'] + 1} {schedule:<9} "
                f"{run['samples_per_s']:8.0f} samples/s (steady), "
                f"{run['train_samples_per_s']:8.0f} (whole run), bubble "
                f"{100 * run['bubble_fraction']:4.0f}%, load {run['load_1m']:.1f}",
            )
            return {
                "workload": asdict(workloads[label, m]),
                "oversubscribed": stages > (os.cpu_count() or 1),
                "partition": list(cut.boundaries),
                "run": run,
            }
        cell_workload = _workloads(config.data_dir)[0]
        curve = _accuracy_run(config, cell_workload, key["side"], partition(cell_workload.label, 2))
        points = curve["points"]
        say(
            f"{key['side']:<16} final {100 * curve['final_accuracy']:.2f}%, "
            f"{config.target_accuracy:.0%} after epoch {curve['epochs_to_target']} / "
            f"{curve['time_to_target_s']} s, accuracy by epoch "
            f"{[round(100 * p['val_accuracy'], 2) for p in points]}, "
            f"train s {[round(p['train_s'], 1) for p in points]}",
        )
        return curve

    return measure


def run_pipedream_study(
    config: PipeDreamStudyConfig,
    *,
    report: Report | None = None,
    out: str | Path | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Run the parts of the study ``config`` names; ``report`` receives a line per run.
    Returns one JSON-ready object: settings, predict / throughput / accuracy, load averages,
    machine.

    With ``out``, the study's cells are recorded in its store there (``study.json``,
    ``cells.jsonl``) as each finishes, so that re-running with the same settings runs only
    the cells not recorded (other settings are refused); its report is rendered
    (``report.md``, ``report.html``, the accuracy plot; ``parnn report DIR`` re-renders
    them) and the object written as ``pipedream.json``. ``quiet``: no progress bar over
    the cells."""
    say: Report = report if report is not None else (lambda line: None)
    settings = config.to_settings()
    load_start = list(os.getloadavg())
    cells = study_cells(config)
    measure = _measure(config, say)
    if out is None:
        records = [
            {"cell": cell.id, "key": dict(cell.key), **measure_timed(measure, cell)}
            for cell in cells
        ]
    else:
        store = StudyStore(out)
        store.open(KIND, settings)
        records = store.run(cells, measure, description="study pipedream", quiet=quiet)
    payload = pipedream_payload(settings, records)
    payload["load_average_start"] = load_start
    payload["load_average_end"] = list(os.getloadavg())
    payload["machine"] = machine_facts()
    if out is not None:
        render_study(out, build_pipedream_report)
        write_json(Path(out) / RESULT_FILE, payload)
    return payload
