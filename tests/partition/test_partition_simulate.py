"""The simulator against the closed forms, and the schedules as exact tables."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from partition_profiles import make_profile

from parnn.errors import ConfigError, ScheduleError
from parnn.partition import Partition
from parnn.partition.comm import CommModel
from parnn.partition.cost import in_flight_microbatches, partition_cost
from parnn.partition.schedules import SCHEDULES, format_schedule, schedule_actions
from parnn.partition.simulate import (
    MESSAGE_MODELS,
    StageTimes,
    closed_form_bubble,
    closed_form_forward_s,
    schedule_bubble,
    simulate,
)


def test_schedule_tables() -> None:
    assert format_schedule(schedule_actions("gpipe", 2, 3)) == (
        "rank0: F0 F1 F2 B0 B1 B2\nrank1: F0 F1 F2 B0 B1 B2"
    )
    assert format_schedule(schedule_actions("1f1b", 4, 4)) == "\n".join(
        [
            "rank0: F0 F1 F2 F3 B0 B1 B2 B3",
            "rank1: F0 F1 F2 B0 F3 B1 B2 B3",
            "rank2: F0 F1 B0 F2 B1 F3 B2 B3",
            "rank3: F0 B0 F1 B1 F2 B2 F3 B3",
        ]
    )
    # Interleaved 1F1B as torch runs it, 2 ranks x 2 chunks, 4 micro-batches (F<mb>.<chunk>).
    assert format_schedule(schedule_actions("interleaved", 2, 4, num_chunks=2)) == "\n".join(
        [
            "rank0: F0.0 F1.0 F0.1 F1.1 F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 B2.1 B3.1 B2.0 B3.0",
            "rank1: F0.0 F1.0 F0.1 B0.1 F1.1 B1.1 F2.0 B0.0 F3.0 B1.0 F2.1 B2.1 F3.1 B3.1 B2.0 B3.0",
        ]
    )


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 8, 16])
def test_equal_stages_match_the_closed_form(schedule: str, p: int, m: int) -> None:
    # Each stage: forward 1 s (0.25 of it receiving), backward 2 s (0.5 receiving).
    times = StageTimes(
        forward_s=(1.0,) + (0.75,) * (p - 1),
        backward_s=(1.5,) * (p - 1) + (2.0,),
        recv_forward_s=(0.0,) + (0.25,) * (p - 1),
        recv_backward_s=(0.5,) * (p - 1) + (0.0,),
    )
    result = simulate(times, schedule=schedule, num_microbatches=m)
    assert result.step_time_s == pytest.approx((m + p - 1) * 3.0)
    assert result.bubble_fraction == pytest.approx(closed_form_bubble(p, m))
    assert all(b == pytest.approx(closed_form_bubble(p, m)) for b in result.rank_bubble)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(0.0, 5.0), min_size=1, max_size=6).flatmap(
        lambda f: st.tuples(
            st.just(f), st.lists(st.floats(0.0, 2.0), min_size=len(f), max_size=len(f))
        )
    ),
    st.integers(1, 12),
)
def test_forward_pass_matches_the_gpipe_study_formula(costs, m) -> None:  # type: ignore[no-untyped-def]
    # time = t1 + c1 + t2 + c2 + ... + t_max (m - 1), c_i charged to the receiving stage.
    forward, receive = costs
    receive = [0.0, *receive[1:]]
    times = StageTimes(
        forward_s=tuple(forward), backward_s=(0.0,) * len(forward), recv_forward_s=tuple(receive)
    )
    stage_costs = [f + c for f, c in zip(forward, receive, strict=True)]
    for schedule in ("gpipe",):
        result = simulate(times, schedule=schedule, num_microbatches=m)
        assert result.step_time_s == pytest.approx(closed_form_forward_s(stage_costs, m))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(0.0, 5.0), min_size=1, max_size=6),
    st.floats(0.0, 3.0),
    st.integers(1, 12),
)
def test_link_latency_overlaps_the_receivers_work(forward, latency, m) -> None:  # type: ignore[no-untyped-def]
    # The latency is paid once per link on the way down, never per micro-batch at the
    # bottleneck: sum(t_i) + (p - 1) L + (m - 1) t_max.
    times = StageTimes(
        forward_s=tuple(forward), backward_s=(0.0,) * len(forward), link_latency_s=latency
    )
    result = simulate(times, schedule="gpipe", num_microbatches=m)
    p = len(forward)
    forward_pass = sum(forward) + (p - 1) * latency + (m - 1) * max(forward)
    last_forward = max(e.end_s for e in result.events if e.kind == "forward")
    assert last_forward == pytest.approx(forward_pass)
    # The (free) backward pass still carries the gradients back over every link.
    assert result.step_time_s == pytest.approx(forward_pass + (p - 1) * latency)
    assert result.comm_s == (0.0,) * p  # waiting on the link is idle time


def test_link_latency_with_backward_and_busy_receives() -> None:
    # 2 stages, 1 micro-batch: F0 (1) -> link (0.5) -> recv (0.25) + F1 (1) + B1 (2) ->
    # link (0.5) -> recv (0.25) + B0 (2): the critical path, 7.5 s.
    times = StageTimes(
        forward_s=(1.0, 1.0),
        backward_s=(2.0, 2.0),
        recv_forward_s=(0.0, 0.25),
        recv_backward_s=(0.25, 0.0),
        link_latency_s=0.5,
    )
    result = simulate(times, schedule="1f1b", num_microbatches=1)
    assert result.step_time_s == pytest.approx(7.5)
    assert result.comm_s == pytest.approx((0.25, 0.25))
    with pytest.raises(ConfigError, match="link_latency_s"):
        StageTimes(forward_s=(1.0,), backward_s=(1.0,), link_latency_s=-1.0)


@pytest.mark.parametrize("p", [2, 4])
@pytest.mark.parametrize("v", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_interleaved_matches_megatron_bubble(p: int, v: int, groups: int) -> None:
    # Bubble time (p - 1)(t_f + t_b) / v: total = m (t_f + t_b) + (p - 1)(t_f + t_b) / v.
    m = p * groups
    stages = p * v
    times = StageTimes(forward_s=(1.0 / v,) * stages, backward_s=(2.0 / v,) * stages)
    result = simulate(times, schedule="interleaved", num_microbatches=m, num_ranks=p)
    assert result.step_time_s == pytest.approx(m * 3.0 + (p - 1) * 3.0 / v)
    assert result.bubble_fraction == pytest.approx(closed_form_bubble(p, m, v))


def test_peak_in_flight_activations() -> None:
    times = StageTimes(forward_s=(1.0,) * 4, backward_s=(2.0,) * 4, saved_bytes=(10,) * 4)
    gpipe = simulate(times, schedule="gpipe", num_microbatches=8)
    assert gpipe.peak_in_flight == (8, 8, 8, 8)
    assert gpipe.peak_activation_bytes == (80, 80, 80, 80)
    one_f_one_b = simulate(times, schedule="1f1b", num_microbatches=8)
    assert one_f_one_b.peak_in_flight == (4, 3, 2, 1)
    assert in_flight_microbatches("1f1b", 4, 8) == (4, 3, 2, 1)
    assert in_flight_microbatches("1f1b", 4, 2) == (2, 2, 2, 1)
    assert in_flight_microbatches("gpipe", 3, 5) == (5, 5, 5)


def test_busy_and_idle_add_up() -> None:
    times = StageTimes(
        forward_s=(1.0, 3.0),
        backward_s=(2.0, 1.0),
        recv_forward_s=(0.0, 0.5),
        recv_backward_s=(0.25, 0.0),
    )
    result = simulate(times, schedule="1f1b", num_microbatches=4)
    assert result.compute_s == pytest.approx((12.0, 16.0))
    assert result.update_s == (0.0, 0.0)
    assert result.comm_s == pytest.approx((1.0, 2.0))
    for busy, idle in zip(result.busy_s, result.idle_s, strict=True):
        assert busy + idle == pytest.approx(result.step_time_s)
    kinds = {event.kind for event in result.events}
    assert kinds == {"forward", "backward", "recv-forward", "recv-backward"}
    # The slowest stage is busy 18 s of a step at least that long.
    assert result.step_time_s >= 18.0


def test_bad_schedules_are_refused() -> None:
    times = StageTimes(forward_s=(1.0,) * 4, backward_s=(1.0,) * 4)
    with pytest.raises(ScheduleError, match="not a multiple of 2"):
        simulate(times, schedule="interleaved", num_microbatches=5, num_ranks=2)
    with pytest.raises(ScheduleError, match="unknown schedule"):
        simulate(times, schedule="zero-bubbles", num_microbatches=4)
    with pytest.raises(ScheduleError, match="needs exactly --stages-per-rank 2"):
        simulate(times, schedule="zbv", num_microbatches=4, num_ranks=4)
    with pytest.raises(ScheduleError, match=r"--microbatches >= 2 x stages \(4\)"):
        simulate(times, schedule="dualpipev", num_microbatches=3)
    with pytest.raises(ScheduleError, match="need --schedule interleaved-1f1b"):
        simulate(times, schedule="gpipe", num_microbatches=4, num_ranks=2)
    with pytest.raises(ScheduleError, match="spread evenly"):
        simulate(times, schedule="interleaved", num_microbatches=3, num_ranks=3)


def test_the_optimizer_update_ends_each_rank_step() -> None:
    base = StageTimes(forward_s=(1.0, 1.0), backward_s=(2.0, 2.0))
    updated = StageTimes(forward_s=(1.0, 1.0), backward_s=(2.0, 2.0), update_s=(0.5, 4.0))
    plain = simulate(base, schedule="gpipe", num_microbatches=2)
    result = simulate(updated, schedule="gpipe", num_microbatches=2)
    # Rank 1 finishes its backwards at 7 s and updates for 4 s; rank 0 ends at 9.5 s.
    assert plain.step_time_s == pytest.approx(9.0)
    assert result.step_time_s == pytest.approx(11.0)
    assert result.update_s == (0.5, 4.0)
    last = [e for e in result.events if e.kind == "update"]
    assert [(e.rank, e.start_s, e.end_s) for e in last] == [(0, 9.0, 9.5), (1, 7.0, 11.0)]


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("v", [1, 2, 3])
def test_interleaved_order_is_torchs(k: int, v: int) -> None:
    from types import SimpleNamespace

    from torch.distributed.pipelining.schedules import ScheduleInterleaved1F1B

    for m in range(1, 13):
        rounds = max(1, m // k)
        if m % rounds:
            continue
        fake = SimpleNamespace(
            n_local_stages=v,
            microbatches_per_round=m // rounds,
            pp_group_size=k,
            _n_microbatches=m,
        )
        plans = schedule_actions("interleaved-1f1b", k, m, num_chunks=v)
        for rank in range(k):
            torch_ops = ScheduleInterleaved1F1B._calculate_single_rank_operations(fake, rank)
            expected = [
                (
                    "F" if op.computation_type.name == "FORWARD" else "B",
                    op.stage_index,
                    op.microbatch_index,
                )
                for op in torch_ops
                if op is not None
            ]
            assert [(a.kind, a.stage, a.microbatch) for a in plans[rank]] == expected
        times = StageTimes(forward_s=(1.0,) * (k * v), backward_s=(2.0,) * (k * v))
        simulate(times, schedule="interleaved-1f1b", num_microbatches=m, num_ranks=k)


def test_priced_partition_puts_the_latency_on_the_link() -> None:
    comm = CommModel(latency_s=0.5, bandwidth_bytes_per_s=1000.0)  # 1000 bytes: 0.5 + 1 s
    profile = make_profile([1.0, 1.0], [2.0, 2.0], activation_bytes=[1000, 1000], comm=comm)
    cost = partition_cost(profile, Partition((0, 1, 2)))
    assert cost.stages[1].recv_forward_s == pytest.approx(1.5)  # the solver counts it whole
    times = StageTimes.from_cost(cost)
    assert times.link_latency_s == 0.5
    assert times.recv_forward_s == pytest.approx((0.0, 1.0))
    assert times.recv_backward_s == pytest.approx((1.0, 0.0))
    # F0 1, link 0.5, recv 1 + F1 1 + B1 2, link 0.5, recv 1 + B0 2: 9 s for one micro-batch.
    assert simulate(times, schedule="gpipe", num_microbatches=1).step_time_s == pytest.approx(9.0)


def _every_synchronous_layout() -> list[tuple[str, int, int, int]]:
    cases = []
    for name, spec in SCHEDULES.items():
        for k in (1, 2, 3, 4):
            for v in (1, 2, 3):
                for m in range(1, 13):
                    try:
                        schedule_actions(name, k, m, num_chunks=v)
                    except ScheduleError:
                        continue
                    if not spec.asynchronous:
                        cases.append((name, k, v, m))
    return cases


def test_every_schedule_the_runtime_runs_is_simulated() -> None:
    cases = _every_synchronous_layout()
    assert {case[0] for case in cases} == set(SCHEDULES) - {"pipedream", "pipedream-2bw"}
    for name, k, v, m in cases:
        n = k * v
        for messages in MESSAGE_MODELS:
            times = StageTimes(
                forward_s=(1.0,) * n,
                backward_s=(2.0,) * n,
                recv_forward_s=(0.1,) * n,
                recv_backward_s=(0.1,) * n,
                link_latency_s=0.05,
                messages=messages,
            )
            result = simulate(times, schedule=name, num_microbatches=m, num_ranks=k)
            # Every action ran once: the compute is the whole work, spread as placed.
            assert sum(result.compute_s) == pytest.approx(m * 3.0 * n), (name, k, v, m)
            assert result.step_time_s >= max(result.busy_s) - 1e-9


@pytest.mark.parametrize("schedule", ["looped-bfs", "interleaved-1f1b"])
@pytest.mark.parametrize(("p", "v", "m"), [(2, 2, 4), (4, 2, 8), (3, 3, 6), (4, 1, 4)])
def test_looped_schedules_match_the_closed_form(schedule: str, p: int, v: int, m: int) -> None:
    if schedule == "interleaved-1f1b" and v == 1:
        v = 2
    times = StageTimes(forward_s=(1.0,) * (p * v), backward_s=(2.0,) * (p * v))
    result = simulate(times, schedule=schedule, num_microbatches=m, num_ranks=p)
    assert result.bubble_fraction == pytest.approx(closed_form_bubble(p, m, v))
    assert schedule_bubble(schedule, p, m, v) == pytest.approx(closed_form_bubble(p, m, v))


def test_a_split_backward_fills_the_bubble() -> None:
    # Equal stages, W half of the backward (the default rule): zero-bubble beats the
    # interleaved 1F1B it is built on, and the V schedules do too; each W follows its I.
    times = StageTimes(forward_s=(1.0,) * 4, backward_s=(2.0,) * 4)
    assert times.backward_weight_s == (1.0,) * 4
    base = simulate(times, schedule="interleaved-1f1b", num_microbatches=4, num_ranks=2)
    for name in ("zero-bubble", "zbv", "dualpipev"):
        result = simulate(times, schedule=name, num_microbatches=4, num_ranks=2)
        assert result.step_time_s < base.step_time_s, name
        assert schedule_bubble(name, 2, 4, 2) is None
        ends = {(e.stage, e.microbatch): e.end_s for e in result.events if e.kind == "backward"}
        for event in result.events:
            if event.kind == "backward-weight":
                assert event.start_s >= ends[(event.stage, event.microbatch)]
                assert event.duration_s == pytest.approx(1.0)
    # The split moves the critical path: 2 stages, 1 micro-batch, F 1 s, B 2 s of which W
    # is w: F0 | F1 | I1 (2 - w) | I0 (2 - w) | W0 (w): a step of 6 - w.
    for w in (0.0, 0.5, 1.0, 2.0):
        split = StageTimes(forward_s=(1.0, 1.0), backward_s=(2.0, 2.0), backward_weight_s=(w, w))
        result = simulate(split, schedule="zero-bubble", num_microbatches=1, num_ranks=2)
        assert result.step_time_s == pytest.approx(6.0 - w)
    with pytest.raises(ConfigError, match="backward_weight_s is part of backward_s"):
        StageTimes(forward_s=(1.0,), backward_s=(1.0,), backward_weight_s=(2.0,))


def test_split_backward_holds_activations_until_the_weight_gradient() -> None:
    times = StageTimes(forward_s=(1.0,) * 4, backward_s=(2.0,) * 4, saved_bytes=(10,) * 4)
    result = simulate(times, schedule="zbv", num_microbatches=4, num_ranks=2)
    plans = schedule_actions("zbv", 2, 4, num_chunks=2)
    for rank, actions in enumerate(plans):
        held = peak = 0
        for action in actions:
            held += {"F": 1, "I": 0, "W": -1, "B": -1}[action.kind]
            peak = max(peak, held)
        assert result.peak_in_flight[rank] == peak
    assert in_flight_microbatches("zbv", 4, 4) == in_flight_microbatches("zbv", 4, 4, num_ranks=2)


def test_a_priced_partition_splits_the_backward_by_the_stated_rule() -> None:
    # Half the backward of a unit with parameters is W; a parameter-free unit is all I.
    profile = make_profile([1.0] * 4, [2.0, 4.0, 6.0, 8.0], num_parameters=[10, 0, 10, 0])
    cost = partition_cost(profile, Partition((0, 2, 4)))
    assert [s.backward_weight_s for s in cost.stages] == [1.0, 3.0]
    assert cost.stages[0].to_dict()["backward_weight_s"] == 1.0
    times = StageTimes.from_cost(cost)
    assert times.backward_weight_s == (1.0, 3.0)
    result = simulate(times, schedule="zero-bubble", num_microbatches=1, num_ranks=2)
    weights = {e.stage: e.duration_s for e in result.events if e.kind == "backward-weight"}
    assert weights == pytest.approx({0: 1.0, 1: 3.0})
