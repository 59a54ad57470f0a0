"""A fake pipeline for the study tests: a closed-form model of a pipelined step, so that the
studies, their records and their reports are tested without starting a process.

Unit ``u`` of a model costs ``UNIT_MS[model][u]`` ms per sample forward and twice that
backward; a stage also pays ``OVERHEAD_S`` per micro-batch (a fixed per-call cost, which
makes the micro-batch curve U-shaped as in the GPipe study). A step takes
``sum(stage) + (m - 1) * max(stage)`` (the GPipe closed form).
"""

from __future__ import annotations

from collections.abc import Sequence

from parnn.bench.studies.runs import Prediction, RunMeasurement, RunSpec, StageMeasurement
from parnn.errors import PartitionError
from parnn.partition.balancers import balanced_partition
from parnn.partition.methods import needs_profile, partition_for
from parnn.partition.partition import Partition

UNIT_MS = {
    "lenet5": (4.0, 3.0, 1.0, 1.0, 1.0),
    "mlp": (2.0, 1.0, 1.0, 1.0),
    "dummy16": (0.1,) * 16,
}
OVERHEAD_S = 1e-3  # per micro-batch per stage


def fake_partition(spec: RunSpec) -> Partition:
    costs = UNIT_MS[spec.model]
    if spec.num_ranks > len(costs):
        raise PartitionError(f"{spec.num_ranks} stages but {spec.model} has {len(costs)} units")
    if needs_profile(spec.partition):
        return balanced_partition(costs, spec.num_ranks)
    return partition_for(spec.partition, num_stages=spec.num_ranks, num_units=len(costs))


def stage_seconds(spec: RunSpec, boundaries: Sequence[int]) -> list[float]:
    """Forward + backward seconds per micro-batch of every stage."""
    costs = UNIT_MS[spec.model]
    size = spec.microbatch_size
    return [
        3 * sum(costs[a:b]) * 1e-3 * size + OVERHEAD_S
        for a, b in zip(boundaries, boundaries[1:], strict=False)
    ]


def closed_form_step(spec: RunSpec, boundaries: Sequence[int]) -> float:
    stages = stage_seconds(spec, boundaries)
    return sum(stages) + (spec.num_microbatches - 1) * max(stages)


class FakePipeline:
    """``measure(spec)``: records every call; every third step is 2 % slower, and
    ``outlier_every`` (if set) makes that step 10x slower."""

    def __init__(self, *, fail_scheme: str | None = None, outlier_every: int | None = None):
        self.calls: list[RunSpec] = []
        self.fail_scheme = fail_scheme
        self.outlier_every = outlier_every

    def __call__(self, spec: RunSpec) -> RunMeasurement:
        self.calls.append(spec)
        if spec.partition == self.fail_scheme:
            raise PartitionError(f"partition {spec.partition!r} refused by the fake")
        partition = fake_partition(spec)
        step = closed_form_step(spec, partition.boundaries)
        times = []
        for index in range(spec.steps):
            factor = 1.02 if index % 3 == 2 else 1.0
            if self.outlier_every and index % self.outlier_every == self.outlier_every - 1:
                factor = 10.0
            times.append(step * factor)
        m = spec.num_microbatches
        stages = []
        per_stage = stage_seconds(spec, partition.boundaries)
        for index, seconds in enumerate(per_stage):
            last = index == len(per_stage) - 1
            stages.append(
                StageMeasurement(
                    forward_s=m * seconds / 3,
                    backward_s=m * 2 * seconds / 3,
                    wait_s=(0.0 if last else 1e-4 * m) + (0.0 if index == 0 else 2e-4 * m),
                    boundary_bytes=0 if last else 4096 * spec.microbatch_size,
                    peak_rss_bytes=100_000_000 + index,
                )
            )
        return RunMeasurement(
            step_times_s=tuple(times),
            boundaries=partition.boundaries,
            stages=tuple(stages),
        )


class FakePredictor:
    """``predict(spec, boundaries)``: the closed form, 10 % optimistic."""

    def __init__(self) -> None:
        self.calls: list[tuple[RunSpec, tuple[int, ...]]] = []

    def __call__(self, spec: RunSpec, boundaries: Sequence[int]) -> Prediction:
        self.calls.append((spec, tuple(boundaries)))
        per_stage = stage_seconds(spec, boundaries)
        m = spec.num_microbatches
        exact = closed_form_step(spec, boundaries)
        step = 0.9 * exact
        total = sum(per_stage)
        return Prediction(
            step_time_s=step,
            forward_time_s=step / 3,
            stage_forward_s=tuple(m * s / 3 for s in per_stage),
            stage_backward_s=tuple(m * 2 * s / 3 for s in per_stage),
            stage_comm_s=tuple(0.0 for _ in per_stage),
            efficiency=total / (len(per_stage) * max(per_stage)),
            efficiency_without_comm=total / (len(per_stage) * max(per_stage)),
            bubble_fraction=1.0 - total * m / (len(per_stage) * exact),
        )
