"""The prediction arithmetic on hand-made profiles: every figure is known in advance (no
timing is measured or asserted)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from plan_profiles import ALLREDUCE, COMM, handmade_machine, handmade_profile

from parnn.partition import Partition, StageTimes, plan_pipeline, simulate
from parnn.partition.comm import CommModel
from parnn.partition.simulate_async import simulate_async
from parnn.plan import (
    Candidate,
    MachineModel,
    Prediction,
    ProfileSource,
    allreduce_s,
    amdahl_fraction,
    extrapolate_profile,
    predict,
    serial_step_s,
    steady_samples_per_s,
)


def source(max_threads: int = 2) -> ProfileSource:
    return ProfileSource(handmade_profile, max_threads=max_threads, comm=COMM)


def step_s(batch_size: int, threads: int) -> float:
    """Five units of weights 1,1,1,3,1 (sum 7), forward + backward = 3 x base, update 0.01 ms."""
    base = 1e-4 + 1e-4 * batch_size / threads
    return 7 * 3 * base + 5 * 1e-5


def test_serial_step_sums_every_unit() -> None:
    assert serial_step_s(handmade_profile(8, 2)) == pytest.approx(step_s(8, 2))


def test_one_process_with_threads() -> None:
    prediction = predict(
        Candidate(axis="threads", threads=2),
        profiles=source(),
        machine=handmade_machine(2),
        batch_size=8,
    )
    assert prediction.step_s == pytest.approx(step_s(8, 2))
    assert prediction.samples_per_s == pytest.approx(8 / step_s(8, 2))
    assert prediction.contention == 1.0  # one process: its profile already saw its threads
    assert prediction.sync_s == 0.0


def test_ddp_pays_contention_and_an_allreduce_of_the_parameters() -> None:
    prediction = predict(
        Candidate(axis="data", threads=1, replicas=2, engine="ddp"),
        profiles=source(),
        machine=handmade_machine(2),
        batch_size=8,
    )
    parameter_bytes = 4 * (100 + 200 + 300 + 400 + 500)
    sync = 2 * (ALLREDUCE.latency_s / 2 + parameter_bytes / (2 * ALLREDUCE.bandwidth_bytes_per_s))
    assert prediction.sync_s == pytest.approx(sync)
    assert prediction.compute_s == pytest.approx(1.25 * step_s(4, 1))  # half the batch each
    assert prediction.samples_per_s == pytest.approx(8 / (1.25 * step_s(4, 1) + sync))
    assert prediction.sync_share == pytest.approx(sync / prediction.step_s)


def test_local_sgd_is_priced_like_ddp() -> None:
    def run(engine: str) -> float:
        candidate = Candidate(axis="data", threads=1, replicas=2, engine=engine)
        return predict(
            candidate, profiles=source(), machine=handmade_machine(2), batch_size=8
        ).samples_per_s

    assert run("local-sgd") == pytest.approx(run("ddp"))


def test_hogwild_workers_each_take_the_whole_batch() -> None:
    prediction = predict(
        Candidate(axis="data", threads=1, replicas=2, engine="hogwild"),
        profiles=source(),
        machine=handmade_machine(2),
        batch_size=8,
    )
    assert prediction.sync_s == 0.0
    assert prediction.samples_per_s == pytest.approx(2 * 8 / (1.25 * step_s(8, 1)))


@pytest.mark.parametrize(
    "schedule", ["gpipe", "1f1b", "interleaved-1f1b", "pipedream", "pipedream-2bw"]
)
def test_pipeline_is_the_simulated_step_slowed_by_contention(schedule: str) -> None:
    profiles = source()
    prediction = predict(
        Candidate(axis="pipeline", threads=1, stages=2, schedule=schedule),
        profiles=profiles,
        machine=handmade_machine(2),
        batch_size=8,
    )
    chunks = 2 if schedule == "interleaved-1f1b" else 1
    plan = plan_pipeline(
        "auto",
        profile_for=lambda size: profiles.profile(size, 1),
        batch_size=8,
        num_stages=2 * chunks,
        num_ranks=2,
        schedule=schedule,
    )
    assert prediction.step_s == pytest.approx(1.25 * plan.chosen.step_time_s)
    assert prediction.num_microbatches == plan.num_microbatches
    assert prediction.partition == plan.partition.boundaries
    assert prediction.bubble_fraction == pytest.approx(plan.chosen.simulation.bubble_fraction)
    assert prediction.bottleneck is not None
    assert prediction.bottleneck["stage"] == plan.chosen.cost.bottleneck_stage


def test_pipedream_is_priced_at_its_steady_state_without_a_flush() -> None:
    profiles = source()
    machine = handmade_machine(2)

    def run(schedule: str) -> Prediction:
        candidate = Candidate(axis="pipeline", threads=1, stages=2, schedule=schedule)
        return predict(candidate, profiles=profiles, machine=machine, batch_size=8)

    pipedream = run("pipedream")
    m = pipedream.num_microbatches
    assert m is not None and pipedream.partition is not None
    plan = plan_pipeline(
        Partition(boundaries=pipedream.partition),
        profile_for=lambda size: profiles.profile(size, 1),
        batch_size=8,
        num_stages=2,
        schedule="pipedream",
        num_microbatches=m,
    )
    times = StageTimes.from_cost(plan.chosen.cost)
    steady = simulate_async(times, schedule="pipedream", num_microbatches=m).step_time_s
    assert pipedream.step_s == pytest.approx(1.25 * steady)  # the asynchronous simulator
    # the same stages without a warm-up and a drain every step: faster, and less idle
    one_f_one_b = run("1f1b")
    assert pipedream.samples_per_s > one_f_one_b.samples_per_s
    assert (pipedream.bubble_fraction or 0.0) < (one_f_one_b.bubble_fraction or 0.0)
    assert (run("pipedream-2bw").num_microbatches or 0) >= 2  # 2BW: m >= ranks


def test_pipeline_actions_pay_the_calibrated_runtime_cost() -> None:
    profiles = source()
    candidate = Candidate(axis="pipeline", threads=1, stages=2, schedule="gpipe")
    free = predict(candidate, profiles=profiles, machine=handmade_machine(2), batch_size=8)
    machine = MachineModel(
        cores=2, contention={2: 1.25}, allreduce=ALLREDUCE, pipeline_action_s=2e-3
    )
    costly = predict(candidate, profiles=profiles, machine=machine, batch_size=8)
    m = costly.num_microbatches
    assert m is not None and costly.partition is not None
    plan = plan_pipeline(
        Partition(boundaries=costly.partition),
        profile_for=lambda size: profiles.profile(size, 1),
        batch_size=8,
        num_stages=2,
        num_microbatches=m,
    )
    times = StageTimes.from_cost(plan.chosen.cost)
    slower = replace(
        times,
        forward_s=tuple(t + 2e-3 for t in times.forward_s),
        backward_s=tuple(t + 2e-3 for t in times.backward_s),
    )
    expected = simulate(slower, schedule="gpipe", num_microbatches=m).step_time_s
    assert costly.step_s == pytest.approx(1.25 * expected)
    assert costly.samples_per_s < free.samples_per_s
    assert m <= (free.num_microbatches or 0)  # a cost per action favours fewer micro-batches


def test_hybrid_adds_the_allreduce_of_its_largest_stage() -> None:
    profiles = source()
    machine = handmade_machine(4)
    candidate = Candidate(
        axis="hybrid", threads=1, replicas=2, stages=2, engine="ddp", schedule="gpipe"
    )
    prediction = predict(candidate, profiles=profiles, machine=machine, batch_size=8)
    plan = plan_pipeline(
        "auto",
        profile_for=lambda size: profiles.profile(size, 1),
        batch_size=4,
        num_stages=2,
        schedule="gpipe",
    )
    largest = max(stage.parameter_bytes for stage in plan.chosen.cost.stages)
    sync = allreduce_s(largest, 2, ALLREDUCE)
    assert prediction.sync_s == pytest.approx(sync)
    assert prediction.samples_per_s == pytest.approx(8 / (1.25 * plan.chosen.step_time_s + sync))
    assert candidate.runnable
    assert not replace(candidate, replicas=4, nodes=2).runnable  # on paper only


def test_contention_is_held_beyond_the_largest_measured() -> None:
    machine = MachineModel(cores=4, contention={2: 1.25, 4: 1.5})
    assert machine.contention_at(1) == 1.0
    assert machine.contention_at(3) == 1.25
    assert machine.contention_at(4) == 1.5
    assert machine.contention_at(64) == 1.5
    assert MachineModel(cores=1).contention_at(8) == 1.0


def test_ring_allreduce_over_replicas_and_the_network() -> None:
    local = CommModel(latency_s=1e-3, bandwidth_bytes_per_s=1e9)
    assert allreduce_s(1e6, 1, local) == 0.0
    assert allreduce_s(1e6, 2, local) == pytest.approx(1e-3 + 1e6 / 1e9)  # the measured fit
    assert allreduce_s(1e6, 4, local) == pytest.approx(6 * (0.5e-3 + 1e6 / 4e9))
    link = CommModel(latency_s=50e-6, bandwidth_bytes_per_s=1.25e9 / 10)
    assert allreduce_s(8e6, 16, local, link=link) == pytest.approx(
        30 * (0.5e-3 + 8e6 / (16 * 1.25e8))
    )


def test_amdahl_extrapolation_of_threads() -> None:
    assert amdahl_fraction(1.0, 0.6, 2) == pytest.approx(0.8)
    assert amdahl_fraction(1.0, 1.2, 2) == 0.0  # slower with threads: nothing parallel
    one, two = handmade_profile(8, 1), handmade_profile(8, 2)
    four = extrapolate_profile(one, two, 4)
    assert four.threads == 4
    for unit, exact in zip(four.units, handmade_profile(8, 4).units, strict=True):
        # the hand-made cost is exactly Amdahl-shaped, so the fit recovers it
        assert unit.forward_s == pytest.approx(exact.forward_s)
        assert unit.update_s == pytest.approx(exact.update_s)
    profiles = source(max_threads=2)
    assert profiles.profile(8, 4).units[0].forward_s == pytest.approx(four.units[0].forward_s)
    assert profiles.extrapolated_threads == {4}


def test_steady_throughput_skips_the_warm_up_points() -> None:
    times = [1.0, 1.5, 2.0, 2.5]
    samples = [10, 20, 30, 40]
    assert steady_samples_per_s(times, samples, skip_points=2) == pytest.approx(20 / 1.0)
    assert steady_samples_per_s(times, samples, skip_points=0) == pytest.approx(30 / 1.5)
    assert steady_samples_per_s([2.0], [10], skip_points=2) == pytest.approx(5.0)
