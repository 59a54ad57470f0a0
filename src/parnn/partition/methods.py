"""Every way to name a partition, behind one function.

A partition spec is explicit boundaries (``0,5,9,13,16``), unit counts per stage
(``5,4,4,3``), a named scheme (``end-heavy``, ... see :data:`~parnn.partition.SCHEMES`) or a
balancer (``uniform``, ``params``, ``fwd-time``, ``time``, ``auto``; see
:mod:`.balancers`). Schemes, ``uniform`` and explicit partitions need no profile; the other
balancers do.
"""

from __future__ import annotations

from collections.abc import Sequence

from parnn.errors import PartitionError
from parnn.partition.balancers import BALANCERS, PROFILE_FREE_BALANCERS, balance
from parnn.partition.partition import Partition, parse_partition_spec
from parnn.partition.profile import ModelProfile
from parnn.partition.schemes import SCHEMES, scheme_partition

__all__ = ["METHODS", "check_partition_spec", "needs_profile", "partition_for"]

METHODS: tuple[str, ...] = (*SCHEMES, *BALANCERS)


def check_partition_spec(spec: str, *, extra: Sequence[str] = ()) -> None:
    """Refuse a spec that names no method and is no list of integers, before anything is
    measured (the list itself is checked against the model's units later). ``extra``: more
    names the caller accepts (``all``)."""
    name = spec.strip().lower()
    if name in METHODS or name in extra:
        return
    if all(part.strip().isdigit() for part in name.split(",")) and name:
        return
    raise PartitionError(
        f"unknown partition {spec!r}: give boundaries like 0,5,9,16, unit counts like 5,4,7, "
        f"or a method: {', '.join((*METHODS, *extra))}"
    )


def needs_profile(spec: str | Partition) -> bool:
    """Whether ``spec`` can only be resolved with a profile (a cost-aware balancer)."""
    return isinstance(spec, str) and spec in BALANCERS and spec not in PROFILE_FREE_BALANCERS


def partition_for(
    spec: str | Partition,
    *,
    num_stages: int,
    num_units: int,
    profile: ModelProfile | None = None,
    in_flight: Sequence[int] | None = None,
    max_stage_memory: float | None = None,
    stashed_versions: Sequence[int] | None = None,
) -> Partition:
    """The partition ``spec`` names, over ``num_units`` units and ``num_stages`` stages.

    An explicit partition must have ``num_stages`` stages. ``in_flight``,
    ``max_stage_memory`` and ``stashed_versions`` (asynchronous schedules) reach ``auto``
    only.
    """
    if profile is not None and profile.num_units != num_units:
        raise PartitionError(
            f"the profile has {profile.num_units} units but the model has {num_units}: "
            "profile the same model (try --refresh)"
        )
    if isinstance(spec, Partition):
        explicit: Partition | None = spec.check_units(num_units)
    else:
        explicit = parse_partition_spec(spec, num_units)
    if explicit is not None:
        if explicit.num_stages != num_stages:
            raise PartitionError(
                f"partition {spec} has {explicit.num_stages} stages but {num_stages} were asked "
                f"for: give {num_stages} stages or change --stages to {explicit.num_stages}"
            )
        return explicit
    assert isinstance(spec, str)
    name = spec.strip().lower()
    if name in SCHEMES:
        return scheme_partition(name, num_units=num_units, num_stages=num_stages)
    if name in BALANCERS:
        if needs_profile(name) and profile is None:
            raise PartitionError(f"partition method {name!r} needs a profile of the model")
        return balance(
            name,
            profile,
            num_stages,
            num_units=num_units,
            in_flight=in_flight,
            max_stage_memory=max_stage_memory,
            stashed_versions=stashed_versions,
        )
    raise PartitionError(
        f"unknown partition {spec!r}: give boundaries like 0,5,9,16, unit counts like 5,4,7, "
        f"or a method: {', '.join(METHODS)}"
    )
