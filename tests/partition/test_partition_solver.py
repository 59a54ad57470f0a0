"""The exact solver and `auto`: brute force agrees, every method gives a valid partition,
communication never lowers a bottleneck, and `auto` is never beaten on its own profile."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from partition_profiles import make_profile

from parnn.errors import PartitionError
from parnn.partition import Partition
from parnn.partition.balancers import auto_partition
from parnn.partition.comm import CommModel
from parnn.partition.cost import in_flight_microbatches, partition_cost
from parnn.partition.methods import METHODS, partition_for
from parnn.partition.solver import min_max_memory, solve_min_max

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def all_partitions(num_units: int, num_stages: int) -> list[Partition]:
    return [
        Partition((0, *cuts, num_units))
        for cuts in itertools.combinations(range(1, num_units), num_stages - 1)
    ]


@st.composite
def profiles(draw: st.DrawFn, *, with_comm: bool = True, with_memory: bool = False):  # type: ignore[no-untyped-def]
    n = draw(st.integers(1, 8))
    k = draw(st.integers(1, n))
    cost = st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False)
    comm = None
    if with_comm and draw(st.booleans()):
        comm = CommModel(
            latency_s=draw(st.floats(0.0, 2.0)),
            bandwidth_bytes_per_s=draw(st.floats(1e3, 1e7)),
        )
    profile = make_profile(
        draw(st.lists(cost, min_size=n, max_size=n)),
        draw(st.lists(cost, min_size=n, max_size=n)),
        activation_bytes=draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)),
        saved_bytes=draw(st.lists(st.integers(0, 10**4), min_size=n, max_size=n)),
        num_parameters=draw(st.lists(st.integers(0, 10**4), min_size=n, max_size=n)),
        comm=comm,
    )
    return profile, k


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@SETTINGS
@given(profiles())
def test_auto_equals_brute_force(case) -> None:  # type: ignore[no-untyped-def]
    profile, k = case
    best = min(
        partition_cost(profile, p).bottleneck_s for p in all_partitions(profile.num_units, k)
    )
    solution = auto_partition(profile, k)
    assert close(solution.bottleneck, best)
    assert close(partition_cost(profile, solution.partition).bottleneck_s, best)


@SETTINGS
@given(profiles(), st.integers(1, 4), st.sampled_from(["gpipe", "1f1b"]), st.floats(0.1, 1.0))
def test_auto_with_memory_cap_equals_brute_force(case, m, schedule, fraction) -> None:  # type: ignore[no-untyped-def]
    profile, k = case
    flights = in_flight_microbatches(schedule, k, m)
    priced = [
        partition_cost(profile, p, in_flight=flights) for p in all_partitions(profile.num_units, k)
    ]
    smallest = min(c.max_memory_bytes for c in priced)
    largest = max(c.max_memory_bytes for c in priced)
    cap = smallest + fraction * (largest - smallest)
    fitting = [c for c in priced if c.max_memory_bytes <= cap]
    solution = auto_partition(profile, k, in_flight=flights, max_stage_memory=cap)
    chosen = partition_cost(profile, solution.partition, in_flight=flights)
    assert chosen.max_memory_bytes <= cap
    assert close(chosen.bottleneck_s, min(c.bottleneck_s for c in fitting))


@SETTINGS
@given(profiles(), st.integers(1, 4))
def test_infeasible_cap_names_the_smallest_cap_that_fits(case, m) -> None:  # type: ignore[no-untyped-def]
    profile, k = case
    flights = in_flight_microbatches("gpipe", k, m)
    smallest = min(
        partition_cost(profile, p, in_flight=flights).max_memory_bytes
        for p in all_partitions(profile.num_units, k)
    )
    fixed = [3 * u.parameter_bytes for u in profile.units]
    per_microbatch = [u.saved_bytes for u in profile.units]
    assert math.isclose(min_max_memory(fixed, per_microbatch, flights), smallest, rel_tol=1e-9)
    if smallest > 0:
        with pytest.raises(PartitionError, match="smallest cap that fits"):
            auto_partition(profile, k, in_flight=flights, max_stage_memory=smallest * 0.999)
    auto_partition(profile, k, in_flight=flights, max_stage_memory=smallest)  # fits exactly


@SETTINGS
@given(profiles())
def test_every_method_gives_a_contiguous_covering_partition(case) -> None:  # type: ignore[no-untyped-def]
    profile, k = case
    for method in METHODS:
        partition = partition_for(
            method, num_stages=k, num_units=profile.num_units, profile=profile
        )
        assert partition.num_stages == k
        assert partition.boundaries[0] == 0 and partition.boundaries[-1] == profile.num_units
        assert all(count >= 1 for count in partition.counts)
        covered = [u for units in partition.stage_ranges for u in units]
        assert covered == list(range(profile.num_units))


@SETTINGS
@given(profiles())
def test_auto_is_never_beaten_by_another_method(case) -> None:  # type: ignore[no-untyped-def]
    profile, k = case
    auto = partition_cost(profile, auto_partition(profile, k).partition).bottleneck_s
    for method in METHODS:
        other = partition_for(method, num_stages=k, num_units=profile.num_units, profile=profile)
        assert auto <= partition_cost(profile, other).bottleneck_s * (1 + 1e-12) + 1e-15


@SETTINGS
@given(profiles(with_comm=False), st.floats(0.0, 1.0), st.floats(1e3, 1e8))
def test_communication_never_lowers_the_bottleneck(case, latency, bandwidth) -> None:  # type: ignore[no-untyped-def]
    profile, k = case
    priced = profile.with_comm(CommModel(latency_s=latency, bandwidth_bytes_per_s=bandwidth))
    for partition in all_partitions(profile.num_units, k):
        free = partition_cost(profile, partition)
        paid = partition_cost(priced, partition)
        assert paid.bottleneck_s >= free.bottleneck_s
        assert all(p.total_s >= f.total_s for p, f in zip(paid.stages, free.stages, strict=True))
    assert auto_partition(priced, k).bottleneck >= auto_partition(profile, k).bottleneck - 1e-12


def test_solver_handles_a_thousand_units_and_64_stages() -> None:
    rng = np.random.default_rng(0)
    costs = rng.random(1000)
    cuts = np.concatenate([[0.0], rng.random(999) * 0.05, [0.0]])
    solution = solve_min_max(costs, 64, cut_costs=cuts)
    prefix = np.concatenate([[0.0], np.cumsum(costs)])
    b = solution.partition.boundaries
    stage_costs = [
        prefix[y] - prefix[x] + cuts[x] + cuts[y] for x, y in zip(b, b[1:], strict=False)
    ]
    assert solution.partition.num_stages == 64
    assert math.isclose(max(stage_costs), solution.bottleneck, rel_tol=1e-12)
    assert solution.bottleneck >= costs.sum() / 64


def test_solver_rejects_bad_sizes() -> None:
    with pytest.raises(PartitionError, match="at most 3 stages"):
        solve_min_max([1.0, 2.0, 3.0], 4)
    with pytest.raises(PartitionError, match=">= 1"):
        solve_min_max([1.0], 0)
    with pytest.raises(PartitionError, match="finite and >= 0"):
        solve_min_max([1.0, -1.0], 1)
