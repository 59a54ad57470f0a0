"""Planning: `--microbatches auto` picks the fastest predicted m; `resolve_partition`."""

from __future__ import annotations

import pytest
from partition_profiles import make_profile

from parnn.errors import ConfigError, PartitionError
from parnn.partition import Partition
from parnn.partition.measure.resolve import count_units, parse_microbatches, resolve_partition
from parnn.partition.plan import microbatch_candidates, plan_pipeline
from parnn.partition.profile import ModelProfile


def overhead_profile(size: int) -> ModelProfile:
    # Two units; each call costs 1 s of fixed overhead plus 1 s per sample (fwd + bwd).
    per_call = 1.0 + size
    return make_profile([per_call / 3] * 2, [2 * per_call / 3] * 2, batch_size=size)


def test_microbatch_candidates() -> None:
    assert microbatch_candidates(32) == (1, 2, 4, 8, 16, 32)
    # torch's interleaved 1F1B: m must be a multiple of its max(1, m // k) rounds.
    assert microbatch_candidates(12, num_ranks=2, schedule="interleaved-1f1b") == (
        1,
        2,
        3,
        4,
        6,
        12,
    )
    assert microbatch_candidates(36, num_ranks=4, schedule="interleaved") == (
        1,
        2,
        3,
        4,
        6,
        12,
        36,
    )
    assert microbatch_candidates(8, num_ranks=4, schedule="1f1b") == (4, 8)  # m >= stages
    assert microbatch_candidates(128, limit=8) == (1, 2, 4, 8)
    with pytest.raises(ConfigError, match="multiple of 4"):
        microbatch_candidates(2, num_ranks=4, schedule="1f1b")


def test_auto_microbatches_picks_the_fastest_predicted_step() -> None:
    # GPipe on 2 equal stages: T(m) = (m + 1)(1 + 16/m) -> 34, 27, 25, 27, 34 for m = 1..16.
    plan = plan_pipeline(
        "time", profile_for=overhead_profile, batch_size=16, num_stages=2, num_microbatches=None
    )
    steps = {c.num_microbatches: c.step_time_s for c in plan.candidates}
    assert steps == pytest.approx({1: 34.0, 2: 27.0, 4: 25.0, 8: 27.0, 16: 34.0})
    assert plan.num_microbatches == 4
    assert plan.chosen.microbatch_size == 4
    assert plan.partition == Partition((0, 1, 2))
    assert plan.samples_per_s == pytest.approx(16 / 25.0)


def test_fixed_microbatches_and_uneven_splits() -> None:
    plan = plan_pipeline(
        "uniform", profile_for=overhead_profile, batch_size=10, num_stages=2, num_microbatches=3
    )
    assert [c.num_microbatches for c in plan.candidates] == [3]
    assert plan.chosen.microbatch_size == 4  # ceil(10 / 3): priced at the largest
    with pytest.raises(ConfigError, match="must be in 1..10"):
        plan_pipeline(
            "uniform",
            profile_for=overhead_profile,
            batch_size=10,
            num_stages=2,
            num_microbatches=11,
        )


def test_auto_microbatches_skips_what_breaks_the_memory_cap() -> None:
    def profile_for(size: int) -> ModelProfile:
        return make_profile([1.0] * 4, [1.0] * 4, saved_bytes=[10 * size] * 4, batch_size=size)

    # GPipe keeps all m micro-batches: memory m * 10 * (B/m) * units = 80 per unit at B = 8.
    with pytest.raises(PartitionError, match="no number of micro-batches"):
        plan_pipeline(
            "auto",
            profile_for=profile_for,
            batch_size=8,
            num_stages=2,
            num_microbatches=None,
            max_stage_memory=100,
        )
    # 1F1B (m >= 2) keeps at most 2 on the first stage: small micro-batches fit.
    plan = plan_pipeline(
        "auto",
        profile_for=profile_for,
        batch_size=8,
        num_stages=2,
        schedule="1f1b",
        num_microbatches=None,
        max_stage_memory=100,
    )
    assert all(c.cost.max_memory_bytes <= 100 for c in plan.candidates)
    assert {m for m, _ in plan.skipped} == {2}
    assert [c.num_microbatches for c in plan.candidates] == [4, 8]


def test_resolve_partition_profiles_only_when_needed() -> None:
    assert count_units("lenet5") == 5
    assert resolve_partition("end-heavy", model="lenet5", num_stages=2).num_stages == 2
    assert resolve_partition("0,2,5", model="lenet5", num_stages=2) == Partition((0, 2, 5))
    profile = make_profile([1.0, 1.0, 1.0, 5.0, 1.0])
    chosen = resolve_partition("auto", model="lenet5", num_stages=2, profile=profile)
    assert chosen == Partition((0, 3, 5))
    with pytest.raises(ConfigError, match="give a batch size"):
        resolve_partition("auto", model="lenet5", num_stages=2)


def test_parse_microbatches() -> None:
    assert parse_microbatches("auto") is None
    assert parse_microbatches("8") == 8
    assert parse_microbatches(None) == 1
    with pytest.raises(ConfigError, match="positive integer or 'auto'"):
        parse_microbatches("many")
    with pytest.raises(ConfigError, match=">= 1"):
        parse_microbatches("0")


def test_resolve_partition_with_a_memory_cap_and_any_runtime_schedule() -> None:
    profile = make_profile([0.5] * 4, [0.5] * 4, saved_bytes=[0, 0, 50, 50])

    def capped(schedule: str, cap: float) -> Partition:
        return resolve_partition(
            "auto",
            model="lenet5",
            num_stages=2,
            profile=profile,
            max_stage_memory=cap,
            schedule=schedule,
            num_microbatches=2,
        )

    # 1F1B keeps one micro-batch on the last stage: u2 + u3 = 100 bytes fit under 110.
    assert capped("1f1b", 110) == Partition((0, 2, 4))
    # GPipe keeps both: 200 bytes; u2 and u3 must part.
    assert capped("gpipe", 110) == Partition((0, 3, 4))
    # A runtime schedule the simulator does not model counts every micro-batch in flight.
    assert capped("zero-bubble", 110) == Partition((0, 3, 4))
    with pytest.raises(PartitionError, match="smallest cap that fits is 100 B"):
        capped("zero-bubble", 60)
    plain = resolve_partition(
        "auto",
        model="lenet5",
        num_stages=2,
        profile=profile,
        schedule="dualpipev",
        num_microbatches=8,
    )
    assert plain == Partition((0, 2, 4))
