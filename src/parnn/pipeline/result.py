"""The measurements of a pipeline run, summarised per stage and per boundary.

Per stage (medians over the steps after warm-up): forward and backward compute, time
blocked waiting for a neighbour (send/recv), and the idle share of the step (the part not
spent computing). The bubble fraction of the whole pipeline is the share of core-time no
stage spent computing: ``1 - sum(compute) / (ranks x step time)``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = [
    "BoundaryStats",
    "PipelineResult",
    "StageStats",
    "summarize_stages",
    "summarize_transport",
]


@dataclass(frozen=True, slots=True)
class StageStats:
    """One stage's costs per step (seconds), medians over the measured steps."""

    stage: int
    rank: int
    units: list[str]
    parameters: int
    forward_s: float
    backward_s: float  # input and weight gradients together
    compute_s: float
    wait_s: float  # blocked in send/recv (per rank; shared by a rank's stages)
    idle_share: float  # 1 - compute / step time
    peak_rss_mib: float
    replica: int = 0  # hybrid: the replica whose stage this is
    allreduce_s: float = 0.0  # hybrid: averaging the stage's gradients across replicas


@dataclass(frozen=True, slots=True)
class BoundaryStats:
    """Bytes crossing the cut after stage ``after_stage``, per micro-batch and per step."""

    after_stage: int
    shape: list[int]  # activation shape of one micro-batch
    activation_bytes: int  # forward, one micro-batch
    bytes_per_step: int  # activations forward + gradients backward, all micro-batches


@dataclass(slots=True)
class PipelineResult:
    """A pipeline run: settings, throughput, per-stage costs, accuracy and files."""

    config: dict[str, Any]
    partition: list[int]
    world_size: int  # processes in all (replicas x pipeline ranks)
    steps: int
    samples: int
    step_time_s: float  # median over steps after warm-up
    step_times_s: list[float]  # every timed step after warm-up (rank 0), for repeats
    samples_per_s: float
    bubble_fraction: float
    wall_s: float  # the whole run: start-up, training, evaluation
    train_s: float  # the training steps alone (rank 0's step times, summed)
    stages: list[StageStats]
    boundaries: list[BoundaryStats]
    losses: list[float]
    history: list[dict[str, Any]]
    val_accuracy: float | None
    val_loss: float | None
    train_samples: int
    val_samples: int
    replicas: int = 1
    """Copies of the pipeline (hybrid), each on its shard of the global batch."""
    transport: dict[str, Any] = field(default_factory=dict)
    """{"requested": "auto", "used": "shm"|"gloo"|"mixed", "pairs": {"0-1": "shm", ...}}:
    the path the stages' messages took between each pair of ranks."""
    startup_s: float | None = None
    """From the start of the process that called run_pipeline (the ``parnn`` command) to
    rank 0's first training step: imports, planning, process start-up and data loading."""
    machine: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, torch.Tensor] | None = None
    weight_stash: list[dict[str, int]] | None = None
    """Asynchronous schedules: per stage, the weight versions stashed and the activations
    held at the peak (bytes); None for the synchronous ones."""
    prediction: dict[str, Any] | None = None
    """``num_microbatches="auto"``: the simulator's choice (num_microbatches, step_time_s,
    samples_per_s, candidates); None when the number was given."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the trained parameters are left out)."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.pop("parameters")
        values["stages"] = [asdict(s) for s in self.stages]
        values["boundaries"] = [asdict(b) for b in self.boundaries]
        return values


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize_stages(
    reports: Sequence[Any],
    *,
    measured_steps: set[int],
    step_time_s: float,
    unit_names: Sequence[Sequence[str]],
    stage_parameters: Sequence[int],
) -> list[StageStats]:
    """Per-stage medians from every rank's chunk, wait and all-reduce records (one entry
    per stage and replica)."""
    stats = []
    for report in reports:
        forward: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        backward: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for step, stage, _microbatch, kind, _start, duration in report.chunks:
            if step in measured_steps:
                target = forward if kind == "F" else backward
                target[stage][step] += duration
        wait_by_step: dict[int, float] = defaultdict(float)
        for step, _start, duration in report.waits:
            if step in measured_steps:
                wait_by_step[step] += duration
        wait_s = _median([wait_by_step[s] for s in measured_steps])
        allreduce_by_step: dict[int, float] = defaultdict(float)
        for step, _start, duration in getattr(report, "allreduces", ()):
            if step in measured_steps:
                allreduce_by_step[step] += duration
        allreduce_s = _median([allreduce_by_step[s] for s in measured_steps])
        for stage in report.stages:
            forward_s = _median([forward[stage][s] for s in measured_steps])
            backward_s = _median([backward[stage][s] for s in measured_steps])
            compute_s = forward_s + backward_s
            stats.append(
                StageStats(
                    stage=stage,
                    rank=report.rank,
                    units=list(unit_names[stage]),
                    parameters=stage_parameters[stage],
                    forward_s=forward_s,
                    backward_s=backward_s,
                    compute_s=compute_s,
                    wait_s=wait_s,
                    idle_share=max(0.0, 1.0 - compute_s / step_time_s) if step_time_s else 0.0,
                    peak_rss_mib=report.peak_rss_bytes / 2**20,
                    replica=getattr(report, "replica", 0),
                    allreduce_s=allreduce_s,
                )
            )
    return sorted(stats, key=lambda s: (s.replica, s.stage))


def summarize_transport(requested: str, reports: Sequence[Any]) -> dict[str, Any]:
    """What the ranks report of their messages' paths, one entry per pair of ranks."""
    pairs = {
        f"{report.rank}-{peer}": path
        for report in reports
        for peer, path in sorted(report.transport.items())
        if report.rank < peer
    }
    used = set(pairs.values())
    return {
        "requested": requested,
        "used": used.pop() if len(used) == 1 else ("mixed" if used else "none"),
        "pairs": pairs,
    }
