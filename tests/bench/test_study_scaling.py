"""The scaling study on a fake pipeline: settings, speedups against the smallest k, report."""

from __future__ import annotations

from pathlib import Path

import pytest
from _study_fakes import FakePipeline, FakePredictor, closed_form_step

from parnn.bench.cells import Cell
from parnn.bench.studies.scaling import (
    ScalingSettings,
    run_scaling_study,
    scaling_cells,
    scaling_spec,
)
from parnn.bench.studies.scaling_report import scaling_points
from parnn.errors import ParnnError, PartitionError


def _settings(**changes: object) -> ScalingSettings:
    values: dict[str, object] = {
        "model": "dummy16",
        "input_shape": (1, 8, 8),
        "num_ranks": (4, 1, 2),
        "batch_size": 32,
        "num_microbatches": 8,
        "partition": "equal-load",
        "repeats": 2,
        "steps": 1,
    }
    values.update(changes)
    return ScalingSettings(**values)  # type: ignore[arg-type]


def test_stages_are_sorted_and_every_cell_runs_the_same_minibatch() -> None:
    settings = _settings()
    assert settings.num_ranks == (1, 2, 4)
    specs = [scaling_spec(settings, cell) for cell in scaling_cells(settings)]
    assert [s.num_ranks for s in specs] == [1, 2, 4]
    assert {(s.batch_size, s.num_microbatches) for s in specs} == {(32, 8)}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_ranks": (2,)}, "scaling needs at least two numbers of stages"),
        ({"partition": "0,8,16"}, "needs a partition name"),
        ({"batch_size": 30}, "does not split into 8 equal micro-batches"),
        ({"model": "no-such-model"}, "unknown model"),
        ({"num_ranks": (1, 16)}, "1f1b needs at least as many micro-batches as stages"),
    ],
)
def test_bad_settings_are_one_line_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ParnnError, match=message) as caught:
        _settings(**changes)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_more_stages_than_units_fails_first(tmp_path: Path) -> None:
    with pytest.raises(PartitionError, match="too few for 32 stages"):
        run_scaling_study(
            _settings(num_ranks=(1, 32), schedule="gpipe"),
            tmp_path,
            measure=FakePipeline(),
            quiet=True,
        )


def test_speedups_against_the_smallest_number_of_stages(tmp_path: Path) -> None:
    settings = _settings(num_ranks=(2, 4, 8))
    outcome = run_scaling_study(
        settings, tmp_path, measure=FakePipeline(), predict=FakePredictor(), quiet=True
    )
    points = scaling_points(outcome.records, cores=64)
    steps = {}
    for k in (2, 4, 8):
        spec = scaling_spec(settings, Cell({"stages": k}))
        steps[k] = closed_form_step(spec, [16 * i // k for i in range(k + 1)])
    assert [p.stages for p in points] == [2, 4, 8]
    assert [p.ideal for p in points] == [1.0, 2.0, 4.0]
    # Every repeat sees one 2 %-slow step in three, so the ratios are the closed form's.
    for point in points:
        assert point.speedup == pytest.approx(steps[2] / steps[point.stages], rel=0.02)
        assert point.efficiency == pytest.approx(point.speedup / point.ideal)
        assert point.predicted_speedup == pytest.approx(steps[2] / steps[point.stages])
    # With one core the stages share it: the capped simulator predicts no speedup at all.
    capped = scaling_points(outcome.records, cores=1)
    assert all(p.capped_speedup is not None and p.capped_speedup <= 1.0 + 1e-9 for p in capped)


def test_the_report_draws_speedup_and_efficiency(tmp_path: Path) -> None:
    outcome = run_scaling_study(
        _settings(), tmp_path, measure=FakePipeline(), predict=FakePredictor(), quiet=True
    )
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("# Pipeline scaling: dummy16")
    assert "## Speedup and efficiency" in markdown and "## Conclusions" in markdown
    assert "the simulator predicted" in markdown
    cores = int(outcome.header["machine"]["usable_cores"])
    if cores < 4:
        assert f"The machine had {cores} usable core" in markdown
    for name in ("scaling.png", "scaling-stages.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 2
