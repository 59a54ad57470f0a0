"""The demo as a study: plan LeNet-5 on the digits bundled with scikit-learn (resized to
1x28x28, batch 64) on the machine it runs on, then verify every axis side by side.

    payload = run_demo(DemoSettings(epochs=3), "runs/demo")

1. **Plan** (one cell): :func:`parnn.plan.make_plan` predicts every way to spend this
   machine's cores (one process with ``t`` threads, data parallel, pipeline, hybrid) from
   the cached per-unit profiles and machine measurements (measured once, the first time,
   in ``~/.cache/parnn``).
2. **Verify** (one cell per run): the best runnable candidate of every axis, one process
   with all the cores' threads and one process with one thread (the baseline) are trained
   for the same epochs with the same optimizer through :func:`parnn.plan.measure_run`
   (the planner's own verification, here for epochs and with an evaluation), each giving
   its measured samples/s and its validation accuracy.

The cells are recorded in the study's store (``study.json``, ``cells.jsonl``:
:class:`~parnn.bench.cells.StudyStore`): the plan is recorded once, so that a resumed demo
runs what that plan chose. The report (:mod:`.demo_report`: ``report.md``,
``report.html``, ``demo.png``) and ``demo.json`` (the ``parnn demo --json`` object plus the
machine facts) are rendered from the records alone. Every partition scheme of a pipeline
side by side is ``parnn study schemes``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parnn.bench.cells import Cell, StudyStore
from parnn.bench.report import render_study
from parnn.bench.studies.demo_report import (
    PLAN,
    RESULTS_FILE,
    build_demo_report,
    demo_payload,
)
from parnn.errors import ConfigError, ParnnError
from parnn.results import write_json

if TYPE_CHECKING:
    from parnn.plan import Candidate, Prediction

__all__ = [
    "BATCH_SIZE",
    "DEMO_DATA",
    "DEMO_MODEL",
    "EPOCHS",
    "KIND",
    "DemoSettings",
    "demo_runs",
    "run_demo",
]

KIND = "demo"
DEMO_MODEL = "lenet5"
DEMO_DATA = "digits"
INPUT_SHAPE = (1, 28, 28)
"""The digits (8x8) resized to LeNet-5's input."""
BATCH_SIZE = 64
OPTIMIZER = "adam"
LR = 0.003
LR_SCHEDULE = "constant"
EPOCHS = 10  # runs of ~1 s each: shorter ones measured +-20% on a quiet machine
WARMUP_STEPS = 2
"""Steps of every run left out of its measured throughput (start-up, first touch)."""


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What a user may change; the rest is the demo's fixed setup (the constants above)."""

    epochs: int = EPOCHS
    seed: int = 0
    cache_dir: Path | None = None
    """Where the plan's profiles and machine measurements are cached; None: the default
    (``~/.cache/parnn``, what ``parnn plan`` uses)."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs {self.epochs} must be >= 1, e.g. --epochs 3")

    def to_dict(self) -> dict[str, Any]:
        """The study's settings (the cache is where, not what: not among them)."""
        settings = {
            "model": DEMO_MODEL,
            "data": DEMO_DATA,
            "batch_size": BATCH_SIZE,
            "optimizer": OPTIMIZER,
            "lr": LR,
            "lr_schedule": LR_SCHEDULE,
            "warmup_steps": WARMUP_STEPS,
            **asdict(self),
        }
        del settings["cache_dir"]
        return settings


def demo_runs(candidates: Sequence[Mapping[str, Any]], cores: int) -> list[dict[str, str]]:
    """Which planned candidates the demo runs, as cell keys (``role``, ``label``), from the
    plan's ranked ``candidates`` (``PlanResult.to_dict()["candidates"]``): one process with
    one thread (role ``baseline``), one with all ``cores`` threads, and the best runnable
    candidate of every axis (role: its axis), each once."""
    from parnn.plan import AXES

    runnable = [c for c in candidates if c.get("runnable")]
    chosen: list[dict[str, str]] = []

    def add(role: str, found: Mapping[str, Any] | None) -> None:
        if found is not None and all(run["label"] != found["config"]["label"] for run in chosen):
            chosen.append({"role": role, "label": found["config"]["label"]})

    def threads(count: int) -> Mapping[str, Any] | None:
        return next(
            (c for c in runnable if c["axis"] == "threads" and c["config"]["threads"] == count),
            None,
        )

    add("baseline", threads(1))
    add("threads", threads(cores))
    for axis in AXES:  # ranked: the first of an axis is its best
        add(axis, next((c for c in runnable if c["axis"] == axis), None))
    return chosen


def _candidate(planned: Mapping[str, Any]) -> tuple[Candidate, Prediction]:
    """The candidate and the prediction a recorded plan entry stands for (what a run
    needs: the layout, and for a pipeline the partition and micro-batch count)."""
    from parnn.plan import Candidate, Prediction

    config = planned["config"]
    candidate = Candidate(
        axis=planned["axis"],
        threads=int(config["threads"]),
        replicas=int(config["replicas"]),
        stages=int(config["stages"]),
        engine=config["engine"],
        schedule=config["schedule"],
        nodes=int(config["nodes"]),
    )
    predicted = planned["prediction"]
    partition = predicted.get("partition")
    prediction = Prediction(
        samples_per_s=float(predicted["samples_per_s"]),
        step_s=float(predicted["step_s"]),
        compute_s=float(predicted["compute_s"]),
        num_microbatches=predicted.get("num_microbatches"),
        partition=None if partition is None else tuple(int(b) for b in partition),
    )
    return candidate, prediction


def _measure(settings: DemoSettings, plan: Mapping[str, Any]) -> Any:
    """The measure function of the demo's run cells (``plan``: the recorded plan)."""
    from parnn.plan import VerifySettings, measure_run
    from parnn.train.optim import OptimizerConfig

    verify = VerifySettings(
        model=DEMO_MODEL,
        input_shape=tuple(plan["input_shape"]),
        batch_size=BATCH_SIZE,
        data=DEMO_DATA,
        epochs=settings.epochs,
        warmup_steps=WARMUP_STEPS,
        steps=WARMUP_STEPS + 1,  # unused: the runs train for epochs
        optimizer=OptimizerConfig(name=OPTIMIZER, lr=LR),
        lr_schedule=LR_SCHEDULE,
        seed=settings.seed,
    )
    by_label = {c["config"]["label"]: c for c in plan["candidates"]}

    def measure(cell: Cell) -> dict[str, Any]:
        candidate, prediction = _candidate(by_label[cell.key["label"]])
        try:
            measured = measure_run(candidate, prediction, verify)
        except ParnnError as error:  # a failed run is a result too: shown, not retried
            return {"error": " ".join(str(error).split())}
        if measured is None:  # pragma: no cover - the demo runs runnable candidates only
            return {"error": f"{candidate.label}: no engine runs it"}
        return measured.to_dict()

    return measure


def _cache_dir(settings: DemoSettings) -> Path:
    from parnn.partition.measure.cache import default_cache_dir

    return settings.cache_dir or default_cache_dir()


def _measured_before(settings: DemoSettings) -> bool:
    """Whether this machine's model (contention, all-reduce) for the demo is cached: if not,
    the plan measures it and the profiles first (about a minute on 2 cores)."""
    from parnn.launch import usable_cores
    from parnn.plan.machine import machine_file_name

    batch = max(1, BATCH_SIZE // max(1, len(usable_cores())))
    return (_cache_dir(settings) / machine_file_name(DEMO_MODEL, INPUT_SHAPE, batch)).exists()


def _plan(settings: DemoSettings) -> dict[str, Any]:
    """The plan cell's measurement: every candidate on this machine, predicted."""
    from parnn.plan import PlanConfig, make_plan

    plan = make_plan(
        PlanConfig(
            model=DEMO_MODEL,
            input_shape=INPUT_SHAPE,
            batch_size=BATCH_SIZE,
            data=DEMO_DATA,
            cache_dir=_cache_dir(settings),
            seed=settings.seed,
        )
    )
    payload = plan.to_dict()
    return {name: payload[name] for name in ("input_shape", "cores", "candidates", "reason",
                                             "assumptions", "skipped", "machine")}  # fmt: skip


def run_demo(
    settings: DemoSettings, out: str | Path, *, quiet: bool = False, fresh: bool = False
) -> dict[str, Any]:
    """Run (or resume) the demo in ``out``, render its report and ``demo.json``; return the
    ``parnn demo --json`` object. ``fresh`` discards an earlier demo's cells there."""
    from parnn.launch.forkserver import start_forkserver

    # The ranks' fork server imports torch, both engines and the digits loader while this
    # process plans; every run's ranks fork with all that loaded.
    start_forkserver(["parnn.pipeline.worker", "parnn.data_parallel.runner", "parnn.data.digits"])
    from parnn.results import machine_facts

    started = time.perf_counter()
    out = Path(out)
    store = StudyStore(out)
    if fresh:
        store.clear()
    store.open(KIND, settings.to_dict())
    plan_cell = Cell({"run": PLAN, "role": "", "label": ""})
    first_time = plan_cell.id not in store.finished_ids() and not _measured_before(settings)
    (plan,) = store.run(
        [plan_cell],
        lambda cell: _plan(settings),
        description="demo: plan (profiling this machine once, about a minute)"
        if first_time
        else "demo: plan",
        quiet=quiet,
    )
    runs = demo_runs(plan["candidates"], int(plan["cores"]))
    store.run(
        [Cell({"run": "verify", **run}) for run in runs],
        _measure(settings, plan),
        description="demo: runs",
        quiet=quiet,
    )
    render_study(out, build_demo_report)
    payload = demo_payload(store.header()["settings"], store.records(), out)
    payload["wall_s"] = time.perf_counter() - started
    write_json(out / RESULTS_FILE, {**payload, "machine": machine_facts()})
    return payload
