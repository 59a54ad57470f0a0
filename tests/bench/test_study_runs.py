"""A cell's repeats: blocks of one launch (or fresh launches), the outlier rule, errors."""

from __future__ import annotations

import pytest
from _study_fakes import FakePipeline, FakePredictor, closed_form_step

from parnn.bench.studies.runs import RunMeasurement, RunSpec, StageMeasurement, measure_cell
from parnn.errors import ConfigError


def _spec(**changes: object) -> RunSpec:
    values: dict[str, object] = {
        "model": "lenet5",
        "input_shape": (1, 28, 28),
        "num_classes": 10,
        "batch_size": 8,
        "num_microbatches": 2,
        "num_ranks": 2,
        "partition": "equal-load",
        "schedule": "gpipe",
        "steps": 3,
        "warmup_steps": 1,
    }
    values.update(changes)
    return RunSpec(**values)  # type: ignore[arg-type]


def test_repeats_are_blocks_of_one_launch() -> None:
    pipeline = FakePipeline()
    record = measure_cell(_spec(), pipeline, repeats=4)
    assert len(pipeline.calls) == 1
    assert pipeline.calls[0].steps == 12  # 4 repeats x 3 timed steps
    step = closed_form_step(_spec(), (0, 3, 5))
    # Each block of 3 steps holds one 2 % slower step: every repeat is the same mean.
    assert record["repeat_times_s"] == pytest.approx([step * (1 + 0.02 / 3)] * 4)
    assert record["step_time_s"]["num_runs"] == 4
    assert record["samples_per_s"]["mean"] == pytest.approx(8 / (step * (1 + 0.02 / 3)))
    assert record["partition"] == {"boundaries": [0, 3, 5], "counts": [3, 2]}
    assert [s["stage"] for s in record["stages"]] == [0, 1]
    assert record["status"] == "ok" and record["prediction"] is None


def test_isolated_repeats_launch_once_each() -> None:
    pipeline = FakePipeline()
    record = measure_cell(_spec(), pipeline, repeats=3, isolate_repeats=True)
    assert [call.steps for call in pipeline.calls] == [3, 3, 3]
    assert record["step_time_s"]["num_runs"] == 3


def test_the_outlier_rule_drops_a_slow_repeat() -> None:
    # Steps of 1: repeat 5 of 6 is 10x slower and falls outside mean ± 1.5 sigma.
    record = measure_cell(_spec(steps=1), FakePipeline(outlier_every=5), repeats=6)
    assert record["step_time_s"]["num_runs"] == 6
    assert record["step_time_s"]["kept"] == 5
    assert max(record["repeat_times_s"]) > 5 * record["step_time_s"]["mean"]


def test_an_engine_error_is_recorded_not_raised() -> None:
    record = measure_cell(_spec(), FakePipeline(fail_scheme="equal-load"), repeats=2)
    assert record["status"] == "error"
    assert "refused by the fake" in record["error"]


def test_the_prediction_is_for_the_partition_that_ran() -> None:
    predictor = FakePredictor()
    record = measure_cell(_spec(partition="auto"), FakePipeline(), repeats=1, predict=predictor)
    assert predictor.calls[0][1] == tuple(record["partition"]["boundaries"])
    assert record["prediction"]["step_time_s"] > 0


def test_bad_specs_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="does not split into 3 equal micro-batches"):
        _spec(batch_size=8, num_microbatches=3)
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        _spec(steps=0)
    with pytest.raises(ConfigError, match="1 stage measurements"):
        RunMeasurement(
            step_times_s=(1.0,),
            boundaries=(0, 2, 5),
            stages=(StageMeasurement(forward_s=1.0, backward_s=1.0),),
        )


def test_too_few_reported_steps_is_an_error() -> None:
    def short(spec: RunSpec) -> RunMeasurement:
        return RunMeasurement(
            step_times_s=(1.0,),
            boundaries=(0, 5),
            stages=(StageMeasurement(forward_s=1.0, backward_s=1.0),),
        )

    with pytest.raises(ConfigError, match="reported 1 timed steps"):
        measure_cell(_spec(num_ranks=1), short, repeats=2)
