"""Verification runs through the real engines: a hybrid candidate through the hybrid engine
(`parnn pipeline --replicas`) and a PipeDream candidate through the asynchronous one, each
with the partition and micro-batches its prediction chose; a run for epochs that is
evaluated (what `parnn demo` compares); candidates on several nodes stay unmeasured."""

from __future__ import annotations

import pytest

from parnn.errors import ConfigError
from parnn.plan import (
    Candidate,
    PlanConfig,
    Prediction,
    VerifySettings,
    measure_candidate,
    measure_run,
)
from parnn.plan.verify import MAX_VERIFY_SAMPLES, MAX_VERIFY_STEPS, run_length
from parnn.train.optim import OptimizerConfig

LENET5 = (1, 28, 28)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("schedule", ["pipedream", "pipedream-2bw"])
def test_a_pipedream_candidate_is_measured_by_the_asynchronous_engine(schedule: str) -> None:
    candidate = Candidate(axis="pipeline", threads=1, stages=2, schedule=schedule)
    prediction = Prediction(
        samples_per_s=1.0, step_s=1.0, compute_s=1.0, num_microbatches=2, partition=(0, 3, 5)
    )
    settings = VerifySettings(
        model="lenet5", input_shape=LENET5, batch_size=8, steps=4, warmup_steps=1
    )
    measured = measure_candidate(candidate, prediction, settings)
    assert measured is not None and measured > 0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_run_for_epochs_is_evaluated() -> None:
    settings = VerifySettings(
        model="lenet5",
        input_shape=LENET5,
        batch_size=64,
        data="digits",
        epochs=1,
        optimizer=OptimizerConfig(name="adam", lr=0.003),
        lr_schedule="constant",
    )
    assert settings.num_samples is None  # the whole dataset, not a few batches
    candidate = Candidate(axis="threads", threads=1)
    prediction = Prediction(samples_per_s=1.0, step_s=1.0, compute_s=1.0)
    measured = measure_run(candidate, prediction, settings)
    assert measured is not None
    assert measured.samples_per_s > 0 and measured.wall_s > 0
    assert measured.val_accuracy is not None and 0.3 < measured.val_accuracy <= 1.0
    short = VerifySettings(model="lenet5", input_shape=LENET5, batch_size=8, steps=3)
    assert short.num_samples == 2 * 8 + 64 and short.epochs is None


def test_epochs_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="epochs 0"):
        VerifySettings(model="lenet5", input_shape=LENET5, batch_size=8, epochs=0)


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("ignore:oversubscribed")  # 4 ranks on a 2-core machine is allowed
def test_a_hybrid_candidate_is_measured_by_the_hybrid_engine() -> None:
    candidate = Candidate(
        axis="hybrid", threads=1, replicas=2, stages=2, engine="ddp", schedule="1f1b"
    )
    assert candidate.runnable
    prediction = Prediction(
        samples_per_s=1.0, step_s=1.0, compute_s=1.0, num_microbatches=2, partition=(0, 3, 5)
    )
    settings = VerifySettings(
        model="lenet5", input_shape=(1, 28, 28), batch_size=8, steps=3, warmup_steps=1
    )
    measured = measure_candidate(candidate, prediction, settings)
    assert measured is not None and measured > 0


def test_a_candidate_on_several_nodes_stays_unmeasured() -> None:
    candidate = Candidate(
        axis="hybrid", threads=1, replicas=4, stages=2, engine="ddp", schedule="gpipe", nodes=2
    )
    prediction = Prediction(
        samples_per_s=1.0, step_s=1.0, compute_s=1.0, num_microbatches=2, partition=(0, 3, 5)
    )
    settings = VerifySettings(model="lenet5", input_shape=(1, 28, 28), batch_size=8)
    assert measure_candidate(candidate, prediction, settings) is None


def test_a_fast_candidate_runs_long_enough_to_be_measured() -> None:
    settings = VerifySettings(
        model="lenet5", input_shape=(1, 28, 28), batch_size=32, steps=6, warmup_steps=2,
        measure_s=1.0,
    )  # fmt: skip
    fast = Prediction(samples_per_s=6400.0, step_s=0.005, compute_s=0.005)
    slow = Prediction(samples_per_s=64.0, step_s=0.5, compute_s=0.5)
    assert run_length(settings, fast).steps == 2 + 200  # 1 s measured at 5 ms a step
    assert run_length(settings, slow).steps == 6  # never fewer than asked
    # the whole run is one epoch (an epoch's end drains an asynchronous pipeline), capped
    assert run_length(settings, fast).num_samples == 203 * 32
    assert run_length(settings, slow).num_samples == 7 * 32
    tiny = Prediction(samples_per_s=1e9, step_s=1e-9, compute_s=1e-9)
    assert run_length(settings, tiny).steps == MAX_VERIFY_STEPS
    assert run_length(settings, tiny).num_samples == MAX_VERIFY_SAMPLES
    exact = VerifySettings(
        model="lenet5", input_shape=(1, 28, 28), batch_size=32, steps=6, warmup_steps=2
    )
    assert run_length(exact, fast).steps == 6  # measure_s 0: exactly the steps asked


def test_verification_seconds_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="verify-seconds"):
        PlanConfig(model="lenet5", batch_size=32, verify_seconds=-1.0)
