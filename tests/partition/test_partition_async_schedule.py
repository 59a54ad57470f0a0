"""PipeDream's asynchronous schedule as data: the exact action grids, the weight version
each micro-batch runs on, and the versions each stage stashes."""

from __future__ import annotations

import pytest

from parnn.errors import PartitionError, ScheduleError
from parnn.partition import StageTimes, in_flight_microbatches, simulate, solve_min_max
from parnn.partition.async_schedule import (
    async_actions,
    check_async_schedule,
    copied_versions,
    format_async_schedule,
    held_versions,
    peak_copies,
    weight_version,
)
from parnn.partition.cost import stashed_weight_versions


def test_two_stages_one_microbatch_per_update_is_the_papers_grid() -> None:
    plans = async_actions(2, 3, 1)
    assert format_async_schedule(plans) == (
        "stage 0: F0v0 F1v0 B0v0 U1 F2v1 B1v0 U2 B2v1 U3\n"
        "stage 1: F0v0 B0v0 U1 F1v1 B1v1 U2 F2v2 B2v2 U3"
    )


def test_three_stages_accumulating_two_microbatches() -> None:
    plans = async_actions(3, 3, 2)
    assert format_async_schedule(plans) == (
        "stage 0: F0v0 F1v0 F2v0 B0v0 F3v0 B1v0 U1 F4v1 B2v0 F5v1 B3v0 U2 B4v1 B5v1 U3\n"
        "stage 1: F0v0 F1v0 B0v0 F2v0 B1v0 U1 F3v1 B2v0 F4v1 B3v1 U2 F5v2 B4v1 B5v2 U3\n"
        "stage 2: F0v0 B0v0 F1v0 B1v0 U1 F2v1 B2v1 F3v1 B3v1 U2 F4v2 B4v2 F5v2 B5v2 U3"
    )


def test_vertical_sync_runs_every_stage_on_the_first_stages_version() -> None:
    plans = async_actions(3, 3, 2, vertical_sync=True)
    first = {a.microbatch: a.version for a in plans[0] if a.kind == "F"}
    for actions in plans:
        assert {a.microbatch: a.version for a in actions if a.kind == "F"} == first
    assert format_async_schedule(plans).splitlines()[2] == (
        "stage 2: F0v0 B0v0 F1v0 B1v0 U1 F2v0 B2v0 F3v0 B3v0 U2 F4v1 B4v1 F5v1 B5v1 U3"
    )


@pytest.mark.parametrize("vertical_sync", [False, True])
@pytest.mark.parametrize(("stages", "m"), [(2, 1), (3, 2), (4, 1), (4, 4)])
def test_backward_uses_the_forwards_version_and_forward_the_newest_or_older(
    stages: int, m: int, vertical_sync: bool
) -> None:
    for stage, actions in enumerate(async_actions(stages, 5, m, vertical_sync=vertical_sync)):
        made = 0
        forward_version = {}
        for action in actions:
            if action.kind == "U":
                assert action.version == made + 1
                made = action.version
            elif action.kind == "F":
                forward_version[action.microbatch] = action.version
                assert action.version == weight_version(
                    stage,
                    action.microbatch,
                    num_stages=stages,
                    num_microbatches=m,
                    vertical_sync=vertical_sync,
                )
                if not vertical_sync:
                    assert action.version == made  # the newest weights at the forward
            else:
                assert action.version == forward_version[action.microbatch]
        assert made == 5  # one update per mini-batch, every stage


def test_stashed_versions_pipedream_k_minus_s_and_2bw_two() -> None:
    peaks = [held_versions(a)[0] for a in async_actions(4, 10, 1)]
    assert peaks == [4, 3, 2, 1]
    peaks = [held_versions(a)[0] for a in async_actions(4, 10, 4)]
    assert peaks == [2, 2, 2, 1]
    peaks = [held_versions(a)[0] for a in async_actions(4, 10, 4, vertical_sync=True)]
    assert peaks == [2, 2, 2, 2]


def test_a_version_is_copied_only_when_it_outlives_the_next_update() -> None:
    first, last = async_actions(2, 6, 1)
    assert copied_versions(last) == frozenset()  # F and B adjacent: the live weights
    # B1v0 runs after U1, and so on; the last version ends with the drain, before U6.
    assert copied_versions(first) == frozenset(range(5))
    assert [peak_copies(a) for a in async_actions(4, 10, 1)] == [4, 3, 2, 0]
    # Vertical sync: the last stage runs on the first stage's (older) versions: copies.
    synced = async_actions(4, 10, 4, vertical_sync=True)
    assert [peak_copies(a) for a in synced] == [2, 2, 2, 2]
    for actions in async_actions(3, 8, 2):
        assert peak_copies(actions) <= held_versions(actions)[0]


def test_2bw_needs_as_many_microbatches_as_stages() -> None:
    check_async_schedule("pipedream-2bw", num_stages=4, num_microbatches=4)
    check_async_schedule("pipedream", num_stages=4, num_microbatches=1)
    with pytest.raises(ScheduleError, match="--microbatches 4 or more"):
        check_async_schedule("pipedream-2bw", num_stages=4, num_microbatches=2)
    with pytest.raises(ScheduleError, match="unknown asynchronous schedule"):
        check_async_schedule("gpipe", num_stages=2, num_microbatches=2)


def test_the_steady_state_of_equal_stages_has_no_bubble() -> None:
    times = StageTimes(
        forward_s=(1.0, 1.0, 1.0), backward_s=(2.0, 2.0, 2.0), update_s=(0.5, 0.5, 0.5)
    )
    asynchronous = simulate(times, schedule="pipedream", num_microbatches=4)
    assert asynchronous.step_time_s == pytest.approx(4 * 3.0 + 0.5)
    assert asynchronous.bubble_fraction == pytest.approx(0.0, abs=1e-12)
    assert asynchronous.peak_in_flight == (3, 2, 1)
    assert asynchronous.stashed_versions == (2, 2, 1)
    # 1F1B flushes: (k - 1) / (m + k - 1) of the compute is bubble, plus the update.
    synchronous = simulate(times, schedule="1f1b", num_microbatches=4)
    assert synchronous.step_time_s == pytest.approx((4 + 3 - 1) * 3.0 + 0.5)


def test_the_slowest_stage_sets_the_asynchronous_period() -> None:
    times = StageTimes(forward_s=(1.0, 3.0), backward_s=(1.0, 3.0))
    result = simulate(times, schedule="pipedream", num_microbatches=1)
    assert result.step_time_s == pytest.approx(6.0)
    assert result.rank_bubble[0] == pytest.approx(1 - 2.0 / 6.0)


def test_stage_memory_and_the_cap_count_stashed_versions() -> None:
    # The last stage's only version is its live weights: no copy.
    assert stashed_weight_versions("pipedream", 4, 1) == (4, 3, 2, 0)
    assert stashed_weight_versions("pipedream-2bw", 4, 4) == (2, 2, 2, 0)
    assert stashed_weight_versions("1f1b", 4, 4) is None
    assert in_flight_microbatches("pipedream", 3, 1) == (3, 2, 1)
    # Two units of 100 parameter bytes each, no activations, 2 stages, 1 copy: the first
    # stage stashes 2 versions under pipedream (300 bytes), the last 1 (200 bytes).
    fixed = [100.0, 100.0]
    solution = solve_min_max(
        [1.0, 1.0],
        2,
        fixed_bytes=fixed,
        per_microbatch_bytes=[0.0, 0.0],
        max_stage_memory=300.0,
        per_version_bytes=fixed,
        stashed_versions=(2, 1),
    )
    assert solution.partition.boundaries == (0, 1, 2)
    with pytest.raises(PartitionError, match="smallest cap that fits is 300 B"):
        solve_min_max(
            [1.0, 1.0],
            2,
            fixed_bytes=fixed,
            per_microbatch_bytes=[0.0, 0.0],
            max_stage_memory=299.0,
            per_version_bytes=fixed,
            stashed_versions=(2, 1),
        )
