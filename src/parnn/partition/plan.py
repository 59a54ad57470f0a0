"""Plan a pipeline step: a partition method, a schedule and a number of micro-batches in,
the predicted step out; with ``num_microbatches=None`` the number the simulator predicts to
be fastest.

Costs are measured per micro-batch, and a smaller micro-batch is not proportionally cheaper
(the GPipe study: fixed per-call costs grow with ``m``), so every candidate ``m`` is priced
with a profile taken at its own micro-batch size ``ceil(B / m)``: ``profile_for(size)``
supplies it (from the cache, or measured). For a cost-aware method the partition is chosen
again for every ``m``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from parnn.errors import ConfigError, ParnnError, PartitionError, ScheduleError
from parnn.partition.cost import (
    PartitionCost,
    in_flight_microbatches,
    partition_cost,
    stashed_weight_versions,
)
from parnn.partition.methods import partition_for
from parnn.partition.partition import Partition
from parnn.partition.profile import ModelProfile
from parnn.partition.schedules import (
    ScheduleSpec,
    canonical_schedule,
    check_schedule,
    get_schedule,
)
from parnn.partition.simulate import Simulation, StageTimes, simulate

__all__ = [
    "MAX_AUTO_MICROBATCHES",
    "PipelinePlan",
    "PlanCandidate",
    "microbatch_candidates",
    "plan_pipeline",
]

MAX_AUTO_MICROBATCHES = 64  # `--microbatches auto` tries divisors of the batch up to this


@dataclass(frozen=True, slots=True)
class PlanCandidate:
    """One number of micro-batches, its partition, its priced stages and its simulated step."""

    num_microbatches: int
    microbatch_size: int
    partition: Partition
    cost: PartitionCost
    simulation: Simulation

    @property
    def step_time_s(self) -> float:
        return self.simulation.step_time_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_microbatches": self.num_microbatches,
            "microbatch_size": self.microbatch_size,
            "boundaries": list(self.partition.boundaries),
            "step_time_s": self.step_time_s,
            "bottleneck_s": self.cost.bottleneck_s,
            "efficiency": self.cost.efficiency,
            "efficiency_without_comm": self.cost.efficiency_without_comm,
            "bubble_fraction": self.simulation.bubble_fraction,
            "max_memory_bytes": self.cost.max_memory_bytes,
        }


@dataclass(frozen=True, slots=True)
class PipelinePlan:
    """The chosen candidate and every candidate tried (in increasing ``m``)."""

    method: str
    schedule: str
    batch_size: int
    num_ranks: int
    chosen: PlanCandidate
    candidates: tuple[PlanCandidate, ...]
    skipped: tuple[tuple[int, str], ...] = ()
    """(m, reason) for candidates that could not be planned (e.g. over the memory cap)."""

    @property
    def partition(self) -> Partition:
        return self.chosen.partition

    @property
    def num_microbatches(self) -> int:
        return self.chosen.num_microbatches

    @property
    def samples_per_s(self) -> float:
        """Predicted training throughput: samples per second."""
        step = self.chosen.step_time_s
        return math.inf if step <= 0 else self.batch_size / step


def _accepts(spec: ScheduleSpec, num_ranks: int, num_microbatches: int) -> bool:
    """The runtime's rules on ``m`` (:func:`.check_schedule`); one rank of a multi-stage
    schedule, which the simulator still replays, needs only its micro-batch rules."""
    try:
        check_schedule(
            spec,
            num_ranks=num_ranks,
            stages_per_rank=spec.fixed_stages_per_rank or spec.min_stages_per_rank,
            num_microbatches=num_microbatches,
            simulated=spec.multi_stage and num_ranks < 2,
        )
    except ScheduleError:
        return False
    return True


def microbatch_candidates(
    batch_size: int,
    *,
    num_ranks: int = 1,
    schedule: str = "gpipe",
    limit: int = MAX_AUTO_MICROBATCHES,
) -> tuple[int, ...]:
    """The ``m`` that ``--microbatches auto`` tries: divisors of the batch size up to
    ``limit`` (equal micro-batches) that the schedule accepts (:func:`.check_schedule`:
    1F1B needs ``m >= k``; interleaved 1F1B a multiple of its ``max(1, m // k)`` rounds...)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    spec = get_schedule(schedule)
    values = [
        m
        for m in range(1, min(batch_size, limit) + 1)
        if batch_size % m == 0 and _accepts(spec, num_ranks, m)
    ]
    if not values:
        raise ConfigError(
            f"no number of micro-batches up to {limit} divides the batch ({batch_size}) and "
            f"suits {spec.name} on {num_ranks} ranks: use a batch size that is a multiple "
            f"of {num_ranks}"
        )
    return tuple(values)


def plan_pipeline(
    method: str | Partition,
    *,
    profile_for: Callable[[int], ModelProfile],
    batch_size: int,
    num_stages: int,
    schedule: str = "gpipe",
    num_microbatches: int | None = None,
    num_ranks: int | None = None,
    max_stage_memory: float | None = None,
    candidates: Sequence[int] | None = None,
) -> PipelinePlan:
    """Price and simulate ``method`` (a partition spec or value) for one or many ``m``.

    ``num_stages`` counts (virtual) stages; ``num_ranks`` defaults to it (interleaved:
    ``num_stages / num_ranks`` chunks per rank). ``num_microbatches=None`` tries
    ``candidates`` (default :func:`microbatch_candidates`) and keeps the fastest predicted
    step; ties go to the smaller ``m`` (less per-call overhead, less to go wrong).
    """
    ranks = num_stages if num_ranks is None else num_ranks
    schedule = canonical_schedule(schedule)
    if num_microbatches is not None:
        if num_microbatches < 1 or num_microbatches > batch_size:
            raise ConfigError(
                f"--microbatches {num_microbatches}: must be in 1..{batch_size} (the batch "
                "size), or auto"
            )
        tried: Sequence[int] = (num_microbatches,)
    else:
        tried = candidates or microbatch_candidates(batch_size, num_ranks=ranks, schedule=schedule)
    name = method if isinstance(method, str) else str(method)
    planned: list[PlanCandidate] = []
    skipped: list[tuple[int, str]] = []
    for m in tried:
        size = math.ceil(batch_size / m)
        in_flight = in_flight_microbatches(schedule, num_stages, m, num_ranks=ranks)
        stashed = stashed_weight_versions(schedule, num_stages, m)
        try:
            profile = profile_for(size)
            partition = partition_for(
                method,
                num_stages=num_stages,
                num_units=profile.num_units,
                profile=profile,
                in_flight=in_flight,
                max_stage_memory=max_stage_memory,
                stashed_versions=stashed,
            )
        except ParnnError as error:  # over the memory cap; a model that cannot run m
            if num_microbatches is not None:
                raise
            skipped.append((m, str(error)))
            continue
        cost = partition_cost(profile, partition, in_flight=in_flight, stashed_versions=stashed)
        simulation = simulate(
            StageTimes.from_cost(cost),
            schedule=schedule,
            num_microbatches=m,
            num_ranks=ranks,
        )
        planned.append(PlanCandidate(m, size, partition, cost, simulation))
    if not planned:
        reasons = "; ".join(f"m={m}: {reason}" for m, reason in skipped)
        raise PartitionError(f"no number of micro-batches can be planned: {reasons}")
    chosen = min(planned, key=lambda c: (c.step_time_s, c.num_microbatches))
    return PipelinePlan(
        method=name,
        schedule=schedule,
        batch_size=batch_size,
        num_ranks=ranks,
        chosen=chosen,
        candidates=tuple(planned),
        skipped=tuple(skipped),
    )
