"""Predict a candidate's samples per second from profiles, the machine model and the
pipeline simulator. Pure arithmetic on measured numbers: nothing runs here.

With ``B`` the global batch, ``step(b, t)`` the sum over units of forward + backward +
update seconds at batch ``b`` and ``t`` threads (one profile), ``c(k)`` the contention
slowdown with ``k`` busy cores on a node, and ``f = c(n t) / c(t)`` for ``n`` processes of
``t`` threads on a node (a ``t``-thread profile already carries ``c(t)``)::

    threads   1 process, t threads     B / step(B, t)
    ddp       d replicas              B / (f step(B/d, t) + allreduce(parameter bytes, d))
    local-sgd d replicas              the same: parameters averaged every step
    hogwild   d workers, no sync      d B / (f step(B, t))
    pipeline  p ranks                 B / (f sim(p, schedule, m))   m chosen by the simulator
    hybrid    d x p                   B / (f sim(B/d) + allreduce(largest stage's bytes, d))

``sim`` is the simulated step of the ``auto`` partition (:func:`parnn.partition.plan_pipeline`
for every ``m``), priced with the measured point-to-point model and profiles taken at each
micro-batch size, every action lengthened by the runtime's calibrated cost per action
(:attr:`MachineModel.pipeline_action_s`); ``m`` is the fastest. The all-reduce
is :func:`parnn.plan.machine.allreduce_s` (a ring on the measured two-process fit; over the
network link when the replicas span nodes). Synchronisation is not overlapped with the
backward pass (DDP's buckets can hide part of it: the prediction errs slow there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from parnn.errors import ParnnError, PartitionError
from parnn.partition.comm import CommModel
from parnn.partition.plan import PlanCandidate, microbatch_candidates, plan_pipeline
from parnn.partition.profile import ModelProfile
from parnn.partition.simulate import StageTimes, simulate
from parnn.plan.enumerate import Candidate
from parnn.plan.machine import MachineModel, allreduce_s
from parnn.plan.profiles import ProfileSource

__all__ = ["MAX_PLANNED_MICROBATCHES", "Prediction", "predict", "serial_step_s"]

MAX_PLANNED_MICROBATCHES = 32
"""Micro-batch counts tried per pipeline: divisors of the batch up to this."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """What one candidate is predicted to do per optimizer step."""

    samples_per_s: float
    step_s: float
    """Seconds of one step (for hogwild: one update of every worker at once)."""
    compute_s: float
    """Seconds computing per step (contention included)."""
    sync_s: float = 0.0
    """Seconds in data-parallel synchronisation per step."""
    contention: float = 1.0
    """The slowdown factor applied for the processes sharing a node."""
    bubble_fraction: float | None = None
    """Pipelines: idle share of the ranks' time."""
    bottleneck: dict[str, Any] | None = None
    """Pipelines: the slowest stage (index, units, seconds per micro-batch)."""
    num_microbatches: int | None = None
    partition: tuple[int, ...] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def sync_share(self) -> float:
        return self.sync_s / self.step_s if self.step_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples_per_s": self.samples_per_s,
            "step_s": self.step_s,
            "compute_s": self.compute_s,
            "sync_s": self.sync_s,
            "sync_share": self.sync_share,
            "contention": self.contention,
            "bubble_fraction": self.bubble_fraction,
            "bottleneck": self.bottleneck,
            "num_microbatches": self.num_microbatches,
            "partition": None if self.partition is None else list(self.partition),
            **self.details,
        }


def serial_step_s(profile: ModelProfile) -> float:
    """One process's training step: every unit's forward, backward and update, in turn."""
    return sum(u.forward_s + u.backward_s + u.update_s for u in profile.units)


def _parameter_bytes(profile: ModelProfile) -> int:
    return sum(u.parameter_bytes for u in profile.units)


def _allreduce(
    num_bytes: float, candidate: Candidate, machine: MachineModel, link: CommModel | None
) -> float:
    network = link if candidate.nodes > 1 else None
    local = machine.allreduce
    if local is None:  # a one-core node: only the network counts
        if network is None:
            return 0.0
        local = CommModel(latency_s=0.0, bandwidth_bytes_per_s=math.inf)
    return allreduce_s(num_bytes, candidate.replicas, local, link=network)


def _contention(candidate: Candidate, machine: MachineModel) -> float:
    return machine.contention_at(candidate.cores_per_node) / machine.contention_at(
        candidate.threads
    )


def _fastest_pipeline(
    candidate: Candidate,
    profiles: ProfileSource,
    batch_size: int,
    schedule: str,
    tried: tuple[int, ...],
    action_s: float,
) -> PlanCandidate:
    """The ``auto`` partition priced for every ``m`` in ``tried`` and simulated with
    ``action_s`` added to every forward and backward action; the fastest (smallest ``m`` on
    a tie). Without an overhead this is :func:`parnn.partition.plan_pipeline`'s choice."""
    best: PlanCandidate | None = None
    errors = []
    for m in tried:
        try:
            planned = plan_pipeline(
                "auto",
                profile_for=lambda size: profiles.profile(size, candidate.threads),
                batch_size=batch_size,
                num_stages=candidate.stages * candidate.chunks,
                num_ranks=candidate.stages,
                schedule=schedule,
                num_microbatches=m,
            ).chosen
        except ParnnError as error:  # a micro-batch the model cannot run
            errors.append(f"m={m}: {error}")
            continue
        if action_s > 0:
            times = StageTimes.from_cost(planned.cost)
            times = replace(
                times,
                forward_s=tuple(t + action_s for t in times.forward_s),
                backward_s=tuple(t + action_s for t in times.backward_s),
            )
            simulation = simulate(
                times, schedule=schedule, num_microbatches=m, num_ranks=candidate.stages
            )
            planned = replace(planned, simulation=simulation)
        if best is None or planned.simulation.step_time_s < best.simulation.step_time_s:
            best = planned
    if best is None:
        raise PartitionError(f"no number of micro-batches can be planned: {'; '.join(errors)}")
    return best


def predict(
    candidate: Candidate,
    *,
    profiles: ProfileSource,
    machine: MachineModel,
    batch_size: int,
    link: CommModel | None = None,
) -> Prediction:
    """The predicted step and samples/s of ``candidate`` at global batch ``batch_size``."""
    t = candidate.threads
    factor = _contention(candidate, machine)
    if candidate.axis == "threads":
        step = serial_step_s(profiles.profile(batch_size, t))
        return Prediction(samples_per_s=batch_size / step, step_s=step, compute_s=step)
    if candidate.axis == "data":
        d = candidate.replicas
        if candidate.engine == "hogwild":
            compute = factor * serial_step_s(profiles.profile(batch_size, t))
            return Prediction(
                samples_per_s=d * batch_size / compute,
                step_s=compute,
                compute_s=compute,
                contention=factor,
            )
        profile = profiles.profile(batch_size // d, t)
        compute = factor * serial_step_s(profile)
        sync = _allreduce(_parameter_bytes(profile), candidate, machine, link)
        step = compute + sync
        return Prediction(
            samples_per_s=batch_size / step,
            step_s=step,
            compute_s=compute,
            sync_s=sync,
            contention=factor,
            details={"allreduce_bytes": _parameter_bytes(profile)},
        )
    # pipeline and hybrid: the simulator on the auto partition
    replica_batch = batch_size // candidate.replicas
    schedule = candidate.schedule or "gpipe"
    tried = microbatch_candidates(
        replica_batch,
        num_ranks=candidate.stages,
        schedule=schedule,
        limit=MAX_PLANNED_MICROBATCHES,
    )
    chosen = _fastest_pipeline(
        candidate, profiles, replica_batch, schedule, tried, machine.pipeline_action_s
    )
    simulated = factor * chosen.simulation.step_time_s
    stage = chosen.cost.bottleneck_stage
    bottleneck = {
        "stage": stage,
        "units": list(chosen.cost.stages[stage].unit_names),
        "seconds_per_microbatch": chosen.cost.stages[stage].total_s,
    }
    stage_bytes = max(s.parameter_bytes for s in chosen.cost.stages)
    sync = _allreduce(stage_bytes, candidate, machine, link) if candidate.replicas > 1 else 0.0
    step = simulated + sync
    return Prediction(
        samples_per_s=batch_size / step,
        step_s=step,
        compute_s=simulated,
        sync_s=sync,
        contention=factor,
        bubble_fraction=chosen.simulation.bubble_fraction,
        bottleneck=bottleneck,
        num_microbatches=chosen.num_microbatches,
        partition=tuple(chosen.partition.boundaries),
        details={
            "microbatch_size": chosen.microbatch_size,
            "pipeline_action_s": machine.pipeline_action_s,
        },
    )
