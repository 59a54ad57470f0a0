"""Each balancer on a hand-made profile whose right answer is known."""

from __future__ import annotations

import pytest
from partition_profiles import make_profile

from parnn.errors import PartitionError
from parnn.partition import Partition, scheme_partition
from parnn.partition.balancers import auto_partition, balance, uniform_partition
from parnn.partition.comm import CommModel
from parnn.partition.cost import partition_cost
from parnn.partition.methods import partition_for


def test_uniform_gives_the_first_stages_the_remainder() -> None:
    # DeepSpeed's partition_uniform: 10 units over 4 stages -> 3, 3, 2, 2.
    assert uniform_partition(10, 4).counts == (3, 3, 2, 2)
    assert uniform_partition(8, 4).counts == (2, 2, 2, 2)
    assert balance("uniform", None, 3, num_units=7).counts == (3, 2, 2)
    with pytest.raises(PartitionError, match="1 .. 3"):
        uniform_partition(3, 4)


def test_params_balances_parameter_counts_and_ignores_time() -> None:
    profile = make_profile([9, 1, 1, 1, 1], num_parameters=[10, 10, 10, 10, 40])
    assert balance("params", profile, 2) == Partition((0, 4, 5))


def test_fwd_time_balances_forward_time_only() -> None:
    # forward 1,1,1,1,4: the heavy forward sits alone; backward is ignored (GPipe).
    profile = make_profile([1, 1, 1, 1, 4], [6, 1, 1, 1, 1])
    assert balance("fwd-time", profile, 2) == Partition((0, 4, 5))


def test_time_balances_forward_plus_backward() -> None:
    # forward + backward = 7, 2, 2, 2, 5: best cut 9 | 9 after unit 1.
    profile = make_profile([1, 1, 1, 1, 4], [6, 1, 1, 1, 1])
    assert balance("time", profile, 2) == Partition((0, 2, 5))
    assert partition_cost(profile, Partition((0, 2, 5))).bottleneck_s == pytest.approx(9.0)


def test_auto_moves_the_cut_away_from_a_large_activation() -> None:
    # Four equal units (2 s each). Cutting in the middle moves 30 bytes (3 s at 10 B/s)
    # each way; cutting after unit 2 moves 1 byte (0.1 s). Time-only says 2 | 2.
    comm = CommModel(latency_s=0.0, bandwidth_bytes_per_s=10.0)
    profile = make_profile([1, 1, 1, 1], [1, 1, 1, 1], activation_bytes=[1, 30, 1, 5], comm=comm)
    assert balance("time", profile, 2) == Partition((0, 2, 4))
    solution = auto_partition(profile, 2)
    assert solution.bottleneck == pytest.approx(6.1)
    # Ties (cut after unit 0 or after unit 2 both cost 6.1) go to the later cut.
    assert solution.partition == Partition((0, 3, 4))
    time_only = partition_cost(profile, Partition((0, 2, 4)))
    assert time_only.bottleneck_s == pytest.approx(7.0)
    assert time_only.efficiency_without_comm == pytest.approx(1.0)
    chosen = partition_cost(profile, solution.partition)
    assert chosen.efficiency == pytest.approx((6.1 + 2.1) / (2 * 6.1))


def test_auto_respects_a_memory_cap() -> None:
    # Equal units; the last two keep 50 bytes each for backward. Cap 60 bytes: they must
    # sit on different stages, so the best 2-stage split becomes 3 | 1.
    profile = make_profile([0.5] * 4, [0.5] * 4, saved_bytes=[0, 0, 50, 50])
    assert auto_partition(profile, 2).partition == Partition((0, 2, 4))
    capped = auto_partition(profile, 2, in_flight=(1, 1), max_stage_memory=60)
    assert capped.partition == Partition((0, 3, 4))
    assert capped.bottleneck == pytest.approx(3.0)
    # Two micro-batches in flight double the activations: 100 bytes per unit > 60.
    with pytest.raises(PartitionError, match=r"smallest cap that fits is 100 B"):
        auto_partition(profile, 2, in_flight=(2, 2), max_stage_memory=60)


def test_auto_counts_parameters_in_memory() -> None:
    profile = make_profile([1.0] * 4, [1.0] * 4, num_parameters=[0, 0, 10, 10])
    # 3 copies x 4 bytes x 10 params = 120 bytes per heavy unit.
    assert auto_partition(profile, 2, max_stage_memory=130).partition == Partition((0, 3, 4))


def test_methods_dispatch_schemes_balancers_and_explicit_partitions() -> None:
    profile = make_profile([1.0] * 6)
    assert partition_for("end-heavy", num_stages=3, num_units=6) == scheme_partition(
        "end-heavy", num_units=6, num_stages=3
    )
    assert partition_for("0,1,6", num_stages=2, num_units=6) == Partition((0, 1, 6))
    assert partition_for("2,4", num_stages=2, num_units=6) == Partition((0, 2, 6))
    assert partition_for("auto", num_stages=3, num_units=6, profile=profile).counts == (2, 2, 2)
    with pytest.raises(PartitionError, match="has 2 stages but 3 were asked"):
        partition_for("0,1,6", num_stages=3, num_units=6)
    with pytest.raises(PartitionError, match="needs a profile"):
        partition_for("time", num_stages=2, num_units=6)
    with pytest.raises(PartitionError, match="unknown partition 'fastest'"):
        partition_for("fastest", num_stages=2, num_units=6)
    with pytest.raises(PartitionError, match="profile has 6 units but the model has 5"):
        partition_for("auto", num_stages=2, num_units=5, profile=profile)
