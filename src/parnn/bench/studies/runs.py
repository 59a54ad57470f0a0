"""One pipeline run as the studies see it, and a cell's repeats turned into statistics.

A study cell is one configuration (model, batch size, partition, stages, micro-batches...)
described by a :class:`RunSpec`. A *measure* function runs it and returns a
:class:`RunMeasurement`: the time of every timed step and what each stage did. The
studies never call an engine directly: they take ``measure`` (and ``predict``, the
simulator's view of the same run) as arguments, so that tests hand them fakes and the
command line hands them :mod:`parnn.bench.studies.engine`.

A *repeat* is one block of ``steps`` timed steps; its value is the block's mean time per
step. By default every repeat of a cell comes from one launch of the pipeline (after
``warmup_steps`` untimed steps), so that process start-up, which costs seconds, is paid
once per cell; ``isolate_repeats=True`` launches the pipeline afresh for every repeat, as
the nn_pipeline study re-ran its script. The repeats are summarised with the study's
outlier rule (:func:`parnn.bench.stats.summarize`: keep runs within ±1.5σ).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from parnn.bench.stats import Summary, summarize
from parnn.errors import ConfigError, ParnnError

__all__ = [
    "Measure",
    "Predict",
    "Prediction",
    "RunMeasurement",
    "RunSpec",
    "StageMeasurement",
    "measure_cell",
    "ok_records",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class RunSpec:
    """Everything that decides one pipeline run of a study cell."""

    model: str
    """Zoo name or user model spec."""
    input_shape: tuple[int, ...]
    """(C, H, W) of one sample."""
    num_classes: int
    """Logits of the model (synthetic labels)."""
    batch_size: int
    """Samples per training step (the mini-batch, split into ``num_microbatches``)."""
    num_microbatches: int
    """Micro-batches per step."""
    num_ranks: int
    """Pipeline ranks, one process and one stage each."""
    partition: str
    """Scheme name, balancer name ('auto', ...) or explicit boundaries '0,5,9,16'."""
    schedule: str
    """Pipeline schedule: 'gpipe', '1f1b', ..."""
    steps: int
    """Timed steps of this launch."""
    warmup_steps: int
    """Untimed steps before them."""
    threads: int = 1
    """Intra-op threads per stage process."""
    seed: int = 0
    """Seed of weights and data."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "num_microbatches", "num_ranks", "steps", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.batch_size % self.num_microbatches:
            raise ConfigError(
                f"batch size {self.batch_size} does not split into {self.num_microbatches} "
                "equal micro-batches: choose a batch size that is a multiple of the micro-batches"
            )

    @property
    def microbatch_size(self) -> int:
        return self.batch_size // self.num_microbatches

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["input_shape"] = list(self.input_shape)
        return payload


@dataclass(frozen=True, kw_only=True, slots=True)
class StageMeasurement:
    """What one stage did, seconds per training step (means over the timed steps)."""

    forward_s: float
    """Forward compute."""
    backward_s: float
    """Backward compute."""
    wait_s: float = 0.0
    """Blocked sending or receiving: the transfer plus waiting for a neighbour (bubbles)."""
    boundary_bytes: int = 0
    """Bytes sent to the next stage per micro-batch (0 for the last stage)."""
    peak_rss_bytes: int = 0
    """Peak resident memory of the stage's process."""

    @property
    def compute_s(self) -> float:
        return self.forward_s + self.backward_s


@dataclass(frozen=True, kw_only=True, slots=True)
class RunMeasurement:
    """One launch of the pipeline: every timed step and every stage."""

    step_times_s: tuple[float, ...]
    """Wall time of each timed step, in order."""
    boundaries: tuple[int, ...]
    """The partition the run used (k + 1 unit boundaries)."""
    stages: tuple[StageMeasurement, ...]
    """One entry per stage, in model order."""

    def __post_init__(self) -> None:
        if not self.step_times_s:
            raise ConfigError("a run measurement needs at least one timed step")
        if len(self.stages) != len(self.boundaries) - 1:
            raise ConfigError(
                f"{len(self.stages)} stage measurements for boundaries {self.boundaries}"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class Prediction:
    """The simulator's view of a run, from the per-unit profile and the comm model."""

    step_time_s: float
    """Predicted seconds per step (forward and backward of every micro-batch)."""
    forward_time_s: float
    """Predicted seconds of the forward passes alone (the schedule with no backward)."""
    stage_forward_s: tuple[float, ...]
    """Per stage, forward compute per step."""
    stage_backward_s: tuple[float, ...]
    """Per stage, backward compute per step."""
    stage_comm_s: tuple[float, ...]
    """Per stage, receiving (both directions) per step."""
    stage_update_s: tuple[float, ...] = ()
    """Per stage, the optimizer update once per step."""
    efficiency: float
    """Partition efficiency with communication: sum(S_i) / (k max S_i)."""
    efficiency_without_comm: float
    """Partition efficiency counting compute only."""
    bubble_fraction: float
    """Idle rank time over all rank time."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Measure = Callable[[RunSpec], RunMeasurement]
Predict = Callable[[RunSpec, Sequence[int]], Prediction]
"""(spec, boundaries actually run) -> the simulator's prediction for that partition."""


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _stage_means(runs: Sequence[RunMeasurement]) -> list[dict[str, Any]]:
    """Per stage, the mean over launches of every stage field."""
    num_stages = len(runs[0].stages)
    stages = []
    for index in range(num_stages):
        chosen = [run.stages[index] for run in runs]
        stages.append(
            {
                "stage": index,
                "forward_s": _mean([s.forward_s for s in chosen]),
                "backward_s": _mean([s.backward_s for s in chosen]),
                "wait_s": _mean([s.wait_s for s in chosen]),
                "boundary_bytes": max(s.boundary_bytes for s in chosen),
                "peak_rss_bytes": max(s.peak_rss_bytes for s in chosen),
            }
        )
    return stages


def _throughput(step_time: Summary, samples: int) -> Summary:
    """Samples per second of the kept repeats: the outlier rule is applied once, to the time,
    and the mean throughput is the samples over the mean time (not a mean of rates)."""
    rates = [samples / t for t in step_time.values]
    return Summary(
        mean=samples / step_time.mean,
        std=statistics.stdev(rates) if len(rates) > 1 else 0.0,
        median=samples / step_time.median,
        minimum=samples / step_time.maximum,
        maximum=samples / step_time.minimum,
        kept=step_time.kept,
        num_runs=step_time.num_runs,
        values=tuple(rates),
    )


def _repeat_times(
    runs: Sequence[RunMeasurement], *, repeats: int, steps: int, isolate: bool
) -> list[float]:
    """Each repeat's mean seconds per step."""
    if isolate:
        return [_mean(run.step_times_s) for run in runs]
    times = runs[0].step_times_s
    if len(times) < repeats * steps:
        raise ConfigError(
            f"the pipeline reported {len(times)} timed steps, {repeats} repeats x {steps} "
            "steps were asked for"
        )
    return [_mean(times[r * steps : (r + 1) * steps]) for r in range(repeats)]


def measure_cell(
    spec: RunSpec,
    measure: Measure,
    *,
    repeats: int,
    isolate_repeats: bool = False,
    predict: Predict | None = None,
) -> dict[str, Any]:
    """Run one cell ``repeats`` times and return its record (JSON-ready).

    ``spec.steps`` is the number of timed steps *per repeat*. Repeats are blocks of one
    launch unless ``isolate_repeats`` asks for a fresh launch each. A :class:`ParnnError` from
    the engine (a scheme that needs more units than the model has, a rank that failed) is
    recorded as the cell's ``error`` instead of ending the study.
    """
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    steps = spec.steps
    record: dict[str, Any] = {
        "spec": spec.to_dict(),
        "repeats_from": "launches" if isolate_repeats else "blocks of one launch",
    }
    try:
        if isolate_repeats:
            runs = [measure(spec) for _ in range(repeats)]
        else:
            launch = replace(spec, steps=repeats * steps)
            runs = [measure(launch)]
    except ParnnError as error:
        return {**record, "status": "error", "error": " ".join(str(error).split())}
    times = _repeat_times(runs, repeats=repeats, steps=steps, isolate=isolate_repeats)
    step_time = summarize(times)
    throughput = _throughput(step_time, spec.batch_size)
    boundaries = list(runs[0].boundaries)
    counts = [b - a for a, b in zip(boundaries, boundaries[1:], strict=False)]
    record.update(
        {
            "status": "ok",
            "partition": {"boundaries": boundaries, "counts": counts},
            "samples_per_step": spec.batch_size,
            "step_time_s": step_time.to_dict(),
            "samples_per_s": throughput.to_dict(),
            "repeat_times_s": times,
            "stages": _stage_means(runs),
            "prediction": None,
        }
    )
    if predict is not None:
        try:
            record["prediction"] = predict(spec, boundaries).to_dict()
        except ParnnError as error:
            record["prediction_error"] = " ".join(str(error).split())
    return record


def ok_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of the cells that ran (not the ones that failed)."""
    return [r for r in records if r.get("status") == "ok"]
