"""The simulator's prediction for a study cell, from a real (cached) profile of the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from parnn.bench.studies.predict import SimulatorPredictor
from parnn.bench.studies.runs import RunSpec


def _spec(**changes: object) -> RunSpec:
    values: dict[str, object] = {
        "model": "lenet5",
        "input_shape": (1, 28, 28),
        "num_classes": 10,
        "batch_size": 16,
        "num_microbatches": 4,
        "num_ranks": 2,
        "partition": "auto",
        "schedule": "gpipe",
        "steps": 1,
        "warmup_steps": 0,
    }
    values.update(changes)
    return RunSpec(**values)  # type: ignore[arg-type]


def test_a_prediction_from_a_cached_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = SimulatorPredictor(cache_dir=tmp_path, comm="none", warmup=0, repeats=1)
    prediction = predictor(_spec(), (0, 2, 5))
    assert prediction.step_time_s > prediction.forward_time_s > 0
    assert len(prediction.stage_forward_s) == 2 and min(prediction.stage_backward_s) > 0
    assert prediction.stage_comm_s == (0.0, 0.0)  # comm="none": transfers are free
    assert 0 < prediction.efficiency <= 1 and 0 <= prediction.bubble_fraction < 1
    profiles = sorted(p.name for p in tmp_path.glob("profile-*-b4-*.json"))
    assert len(profiles) == 1  # one profile, at the micro-batch size 16 / 4

    # A resumed study predicts from the cache: nothing is measured again.
    import parnn.partition.measure.cache as cache

    def no_measuring(*args: object, **kwargs: object) -> None:
        raise AssertionError("profiled again")

    monkeypatch.setattr(cache, "profile_model", no_measuring)
    again = SimulatorPredictor(cache_dir=tmp_path, comm="none", warmup=0, repeats=1)
    assert again(_spec(), (0, 2, 5)).stage_forward_s == prediction.stage_forward_s
