"""Balancers: partitions chosen from a profile, each after the system that made it popular.

=========  ===============================================================================
uniform    equal unit counts, the first ``n mod k`` stages one unit more (DeepSpeed
           ``partition_method="uniform"``); needs no profile
params     balance parameter counts (DeepSpeed's default ``"parameters"``)
fwd-time   balance forward time only (GPipe's partitioner)
time       balance forward + backward time, no communication (torchgpipe ``balance_by_time``)
auto       minimise the slowest stage with forward + backward + communication, optionally
           under a per-stage memory cap (ours)
=========  ===============================================================================

Every weighted balancer here is solved exactly (min-max over contiguous partitions of its
own weight), so a baseline loses to ``auto`` only by what it leaves out of its weight, not
by a weaker search. ``auto`` is optimal for the cost model of :mod:`.cost`, so no other
method can have a smaller predicted bottleneck on the same profile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parnn.errors import PartitionError
from parnn.partition.cost import DEFAULT_PARAMETER_COPIES, cut_comm_s
from parnn.partition.partition import Partition
from parnn.partition.profile import ModelProfile
from parnn.partition.solver import Solution, Vector, solve_min_max

__all__ = [
    "BALANCERS",
    "PROFILE_FREE_BALANCERS",
    "auto_partition",
    "balance",
    "balanced_partition",
    "uniform_partition",
]

BALANCERS: tuple[str, ...] = ("uniform", "params", "fwd-time", "time", "auto")
PROFILE_FREE_BALANCERS: tuple[str, ...] = ("uniform",)


def uniform_partition(num_units: int, num_stages: int) -> Partition:
    """Equal unit counts; the first ``num_units % num_stages`` stages get one more."""
    if num_stages < 1 or num_stages > num_units:
        raise PartitionError(
            f"cannot split {num_units} units into {num_stages} stages: use 1 .. {num_units}"
        )
    base, extra = divmod(num_units, num_stages)
    return Partition.from_counts([base + (1 if i < extra else 0) for i in range(num_stages)])


def balanced_partition(weights: Vector, num_stages: int) -> Partition:
    """The contiguous partition whose heaviest stage (sum of ``weights``) is lightest."""
    return solve_min_max(weights, num_stages).partition


def auto_partition(
    profile: ModelProfile,
    num_stages: int,
    *,
    in_flight: Sequence[int] | None = None,
    max_stage_memory: float | None = None,
    parameter_copies: int = DEFAULT_PARAMETER_COPIES,
    stashed_versions: Sequence[int] | None = None,
) -> Solution:
    """The partition with the fastest slowest stage, communication included (exact).

    A stage costs forward + backward time of its units plus receiving its input activations
    and its output gradient (:mod:`.cost`). ``max_stage_memory`` (bytes) caps each stage's
    ``parameter_copies x parameters + in_flight[i] x saved activations``, plus
    ``stashed_versions[i] x parameters`` under an asynchronous schedule (weight stashing).
    """
    units = profile.units
    return solve_min_max(
        profile.forward_s + profile.backward_s,
        num_stages,
        cut_costs=cut_comm_s(profile),
        fixed_bytes=np.array([parameter_copies * u.parameter_bytes for u in units], dtype=float),
        per_microbatch_bytes=np.array([u.saved_bytes for u in units], dtype=float),
        in_flight=in_flight,
        max_stage_memory=max_stage_memory,
        per_version_bytes=np.array([u.parameter_bytes for u in units], dtype=float),
        stashed_versions=stashed_versions,
    )


def balance(
    method: str,
    profile: ModelProfile | None,
    num_stages: int,
    *,
    num_units: int | None = None,
    in_flight: Sequence[int] | None = None,
    max_stage_memory: float | None = None,
    parameter_copies: int = DEFAULT_PARAMETER_COPIES,
    stashed_versions: Sequence[int] | None = None,
) -> Partition:
    """The partition balancer ``method`` gives (one of :data:`BALANCERS`).

    ``uniform`` needs only ``num_units`` (or a profile); the others need a profile.
    ``max_stage_memory`` applies to ``auto`` only (the baselines know nothing of memory).
    """
    if method not in BALANCERS:
        raise PartitionError(f"unknown balancer {method!r}; valid: {', '.join(BALANCERS)}")
    if method == "uniform":
        count = num_units if num_units is not None else None
        if count is None:
            if profile is None:
                raise PartitionError("balancer 'uniform' needs num_units or a profile")
            count = profile.num_units
        return uniform_partition(count, num_stages)
    if profile is None:
        raise PartitionError(f"balancer {method!r} needs a profile of the model")
    if method == "params":
        return balanced_partition(profile.array("num_parameters"), num_stages)
    if method == "fwd-time":
        return balanced_partition(profile.forward_s, num_stages)
    if method == "time":
        return balanced_partition(profile.forward_s + profile.backward_s, num_stages)
    return auto_partition(
        profile,
        num_stages,
        in_flight=in_flight,
        max_stage_memory=max_stage_memory,
        parameter_copies=parameter_copies,
        stashed_versions=stashed_versions,
    ).partition
