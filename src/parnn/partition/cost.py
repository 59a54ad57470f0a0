"""What a partition costs, per stage and per micro-batch, under the profile's numbers.

A stage holding units ``a .. b-1`` of a profile measured at the micro-batch size costs, per
micro-batch::

    compute   = sum(forward_s[a:b]) + sum(backward_s[a:b])
    comm      = recv(activations at cut a)   # forward: the input from the stage before
              + recv(gradients at cut b)     # backward: the output's gradient from after
    total     = compute + comm

The receiver pays for a transfer (it waits for the bytes and copies them in; sends are
posted and left to the backend), so every cut costs ``comm.time_s(bytes)`` once in each
direction, charged to the stage that receives. A cut after unit ``u`` moves
``activation_bytes[u]``; the model's input and the loss need no transfer.

The optimizer update of a stage's parameters (``update_s``) runs once per step, after the
stage's last backward; it adds to the step time (:mod:`.simulate`), not to the per
micro-batch stage cost.

Memory per stage: ``parameter_copies`` copies of its parameters (weights, gradients, one
optimizer state) plus, for every micro-batch in flight, the bytes its units save for
backward, plus, under an asynchronous schedule, one copy per stashed weight version
(:func:`stashed_weight_versions`). How many micro-batches are in flight depends on the schedule
(:func:`in_flight_microbatches`).

Partition efficiency (the GPipe study's measure) = sum(stage cost) / (k * max stage cost),
reported with and without communication.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from parnn.errors import ConfigError, ScheduleError
from parnn.partition.async_schedule import async_actions, is_async_schedule, peak_copies
from parnn.partition.partition import Partition
from parnn.partition.profile import ModelProfile
from parnn.partition.schedules import get_schedule, schedule_actions

__all__ = [
    "DEFAULT_PARAMETER_COPIES",
    "PartitionCost",
    "StageCost",
    "cut_comm_s",
    "efficiency",
    "in_flight_microbatches",
    "stashed_weight_versions",
    "partition_cost",
]

DEFAULT_PARAMETER_COPIES = 3  # weights + gradients + one optimizer state (SGD momentum)


def cut_comm_s(profile: ModelProfile) -> np.ndarray:
    """(n + 1,) seconds to move one cut's tensor once, for a cut before unit ``x``
    (``x = 0 .. n``); 0 at both ends, and everywhere when the profile has no comm model."""
    n = profile.num_units
    cuts = np.zeros(n + 1)
    if profile.comm is not None:
        for x in range(1, n):
            cuts[x] = profile.comm.time_s(profile.units[x - 1].activation_bytes)
    return cuts


def in_flight_microbatches(
    schedule: str, num_stages: int, num_microbatches: int, *, num_ranks: int | None = None
) -> tuple[int, ...]:
    """Micro-batches whose activations stage ``i`` holds at its peak under ``schedule``,
    read off the schedule itself: GPipe keeps all ``m``; 1F1B keeps ``min(m, k - i)``;
    the multi-stage schedules (``num_ranks`` ranks, ``num_stages / num_ranks`` stages
    each) keep what their warm-up leaves in flight on every stage."""
    if num_stages < 1 or num_microbatches < 1:
        raise ConfigError(
            f"need num_stages >= 1 and num_microbatches >= 1, got {num_stages}, {num_microbatches}"
        )
    fixed = get_schedule(schedule).fixed_stages_per_rank or 1  # V schedules: 2 per rank
    ranks = num_stages // fixed if num_ranks is None else num_ranks
    if ranks < 1 or num_stages % ranks:
        raise ScheduleError(f"{num_stages} stages cannot be spread evenly over {ranks} ranks")
    plans = schedule_actions(schedule, ranks, num_microbatches, num_chunks=num_stages // ranks)
    held = [0] * num_stages
    peak = [0] * num_stages
    for actions in plans:
        for action in actions:
            if action.kind == "I":
                continue  # a split backward frees the activations at its W
            held[action.stage] += 1 if action.kind == "F" else -1
            peak[action.stage] = max(peak[action.stage], held[action.stage])
    return tuple(peak)


def stashed_weight_versions(
    schedule: str, num_stages: int, num_microbatches: int
) -> tuple[int, ...] | None:
    """Copies of its weights every stage stashes at its peak under an asynchronous schedule
    (:func:`.async_schedule.peak_copies`: pipedream ``k - i`` for ``m = 1``, pipedream-2bw
    at most 2, and none on the last stage, whose only version is its live weights); None
    for a synchronous schedule."""
    if not is_async_schedule(schedule):
        return None
    stream = async_actions(num_stages, 2 * num_stages + 2, num_microbatches)
    return tuple(peak_copies(actions) for actions in stream)


def efficiency(stage_costs_s: Sequence[float]) -> float:
    """sum(S_i) / (k * max S_i); 1.0 is a perfect balance (and for all-zero costs)."""
    costs = [float(c) for c in stage_costs_s]
    worst = max(costs)
    return 1.0 if worst <= 0.0 else sum(costs) / (len(costs) * worst)


@dataclass(frozen=True, slots=True)
class StageCost:
    """One stage of a partition, priced per micro-batch."""

    stage: int
    start: int
    """First unit (inclusive)."""
    stop: int
    """Last unit + 1."""
    unit_names: tuple[str, ...]
    num_parameters: int
    forward_s: float
    """Forward compute, seconds per micro-batch."""
    backward_s: float
    """Backward compute, seconds per micro-batch."""
    recv_forward_s: float
    """Receiving the input activations (0 for the first stage)."""
    recv_backward_s: float
    """Receiving the output's gradient (0 for the last stage)."""
    update_s: float
    """Optimizer update of the stage's parameters, once per step (not per micro-batch)."""
    send_bytes: int
    """Bytes sent forward per micro-batch (the last unit's output; 0 for the last stage)."""
    parameter_bytes: int
    """Bytes of the stage's parameters (one copy)."""
    saved_bytes: int
    """Activation bytes one micro-batch keeps on the stage until its backward."""
    memory_bytes: int
    """Parameters x copies + saved activations x micro-batches in flight."""
    in_flight: int
    """Micro-batches in flight at the peak (from the schedule)."""
    stashed_versions: int = 0
    """Weight versions stashed at the peak (asynchronous schedules; 0 otherwise)."""
    backward_weight_s: float = 0.0
    """The weight-gradient part of ``backward_s`` (:attr:`.UnitProfile.backward_weight_s`),
    what a split backward (zero-bubble, zbv, dualpipev) defers."""

    @property
    def num_units(self) -> int:
        return self.stop - self.start

    @property
    def compute_s(self) -> float:
        return self.forward_s + self.backward_s

    @property
    def comm_s(self) -> float:
        return self.recv_forward_s + self.recv_backward_s

    @property
    def total_s(self) -> float:
        return self.compute_s + self.comm_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "start": self.start,
            "stop": self.stop,
            "num_units": self.num_units,
            "unit_names": list(self.unit_names),
            "num_parameters": self.num_parameters,
            "forward_s": self.forward_s,
            "backward_s": self.backward_s,
            "recv_forward_s": self.recv_forward_s,
            "recv_backward_s": self.recv_backward_s,
            "comm_s": self.comm_s,
            "update_s": self.update_s,
            "compute_s": self.compute_s,
            "total_s": self.total_s,
            "send_bytes": self.send_bytes,
            "parameter_bytes": self.parameter_bytes,
            "saved_bytes": self.saved_bytes,
            "in_flight": self.in_flight,
            "stashed_versions": self.stashed_versions,
            "backward_weight_s": self.backward_weight_s,
            "stash_bytes": self.stashed_versions * self.parameter_bytes,
            "memory_bytes": self.memory_bytes,
        }


@dataclass(frozen=True, slots=True)
class PartitionCost:
    """Every stage of a partition priced, with the bottleneck and the efficiencies."""

    partition: Partition
    stages: tuple[StageCost, ...]
    batch_size: int
    """The micro-batch size the costs are for."""
    link_latency_s: float = 0.0
    """The part of every receive that is the link's latency (the comm model's fixed cost):
    the simulator lets it overlap the receiver's work; the stage costs count it whole."""

    @property
    def bottleneck_s(self) -> float:
        """The slowest stage, communication included: seconds per micro-batch."""
        return max(stage.total_s for stage in self.stages)

    @property
    def bottleneck_compute_s(self) -> float:
        """The slowest stage counting compute only."""
        return max(stage.compute_s for stage in self.stages)

    @property
    def bottleneck_stage(self) -> int:
        return max(range(len(self.stages)), key=lambda i: self.stages[i].total_s)

    @property
    def efficiency(self) -> float:
        """Partition efficiency with communication in the stage costs."""
        return efficiency([stage.total_s for stage in self.stages])

    @property
    def efficiency_without_comm(self) -> float:
        """Partition efficiency counting compute only (the study's first table)."""
        return efficiency([stage.compute_s for stage in self.stages])

    @property
    def max_memory_bytes(self) -> int:
        return max(stage.memory_bytes for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "boundaries": list(self.partition.boundaries),
            "counts": list(self.partition.counts),
            "microbatch_size": self.batch_size,
            "bottleneck_s": self.bottleneck_s,
            "bottleneck_compute_s": self.bottleneck_compute_s,
            "bottleneck_stage": self.bottleneck_stage,
            "efficiency": self.efficiency,
            "efficiency_without_comm": self.efficiency_without_comm,
            "max_memory_bytes": self.max_memory_bytes,
            "link_latency_s": self.link_latency_s,
            "stages": [stage.to_dict() for stage in self.stages],
        }


def partition_cost(
    profile: ModelProfile,
    partition: Partition,
    *,
    in_flight: Sequence[int] | None = None,
    parameter_copies: int = DEFAULT_PARAMETER_COPIES,
    stashed_versions: Sequence[int] | None = None,
) -> PartitionCost:
    """Price ``partition`` stage by stage with ``profile`` (per micro-batch of the profile's
    batch size). ``in_flight[i]``: micro-batches stage ``i`` holds (default 1);
    ``stashed_versions[i]``: weight versions it stashes (default 0)."""
    partition.check_units(profile.num_units)
    k = partition.num_stages
    flights = tuple(in_flight) if in_flight is not None else (1,) * k
    if len(flights) != k or any(f < 1 for f in flights):
        raise ConfigError(f"in_flight needs {k} values >= 1, one per stage; got {flights}")
    stashes = tuple(stashed_versions) if stashed_versions is not None else (0,) * k
    if len(stashes) != k or any(v < 0 for v in stashes):
        raise ConfigError(f"stashed_versions needs {k} values >= 0, got {stashes}")
    cuts = cut_comm_s(profile)
    stages = []
    for stage, units in enumerate(partition.stage_ranges):
        start, stop = units.start, units.stop
        chosen = profile.units[start:stop]
        parameter_bytes = sum(unit.parameter_bytes for unit in chosen)
        saved_bytes = sum(unit.saved_bytes for unit in chosen)
        stages.append(
            StageCost(
                stage=stage,
                start=start,
                stop=stop,
                unit_names=tuple(unit.name for unit in chosen),
                num_parameters=sum(unit.num_parameters for unit in chosen),
                forward_s=sum(unit.forward_s for unit in chosen),
                backward_s=sum(unit.backward_s for unit in chosen),
                recv_forward_s=float(cuts[start]),
                recv_backward_s=float(cuts[stop]),
                update_s=sum(unit.update_s for unit in chosen),
                send_bytes=0 if stop == profile.num_units else chosen[-1].activation_bytes,
                parameter_bytes=parameter_bytes,
                saved_bytes=saved_bytes,
                memory_bytes=(parameter_copies + stashes[stage]) * parameter_bytes
                + flights[stage] * saved_bytes,
                in_flight=flights[stage],
                stashed_versions=stashes[stage],
                backward_weight_s=sum(unit.backward_weight_s for unit in chosen),
            )
        )
    return PartitionCost(
        partition=partition,
        stages=tuple(stages),
        batch_size=profile.batch_size,
        link_latency_s=profile.comm.latency_s if profile.comm is not None else 0.0,
    )
