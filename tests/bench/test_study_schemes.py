"""The schemes study on a fake pipeline: cells, settings, resume, records and report."""

from __future__ import annotations

from pathlib import Path

import pytest
from _study_fakes import FakePipeline, FakePredictor, closed_form_step

from parnn.bench.cells import Cell, StudyStore
from parnn.bench.studies.runs import RunMeasurement, RunSpec
from parnn.bench.studies.schemes import (
    DEFAULT_SCHEMES,
    SchemesSettings,
    run_schemes_study,
    schemes_cells,
    schemes_spec,
)
from parnn.bench.studies.schemes_report import best_per_batch
from parnn.errors import CheckpointError, ConfigError, ModelError, PartitionError
from parnn.partition.methods import partition_for


def _settings(**changes: object) -> SchemesSettings:
    values: dict[str, object] = {
        "models": ("lenet5", "mlp"),
        "batch_sizes": (1, 4),
        "schemes": ("equal-load", "front-heavy", "end-heavy", "auto"),
        "num_ranks": 2,
        "num_microbatches": 2,
        "input_shape": (1, 28, 28),
        "repeats": 3,
        "steps": 2,
    }
    values.update(changes)
    return SchemesSettings(**values)  # type: ignore[arg-type]


def test_cells_cover_models_batches_and_schemes_in_plot_order() -> None:
    cells = schemes_cells(_settings())
    assert len(cells) == 2 * 2 * 4
    assert cells[0].key == {"model": "lenet5", "batch_size": 1, "scheme": "equal-load"}
    assert cells[4].key == {"model": "lenet5", "batch_size": 4, "scheme": "equal-load"}
    assert cells[-1].key == {"model": "mlp", "batch_size": 4, "scheme": "auto"}
    spec = schemes_spec(_settings(), cells[4])
    # The batch size is the micro-batch's: a step pipelines num_microbatches of them.
    assert (spec.batch_size, spec.num_microbatches, spec.microbatch_size) == (8, 2, 4)


def test_defaults_are_every_named_scheme_plus_auto() -> None:
    assert SchemesSettings().schemes == DEFAULT_SCHEMES
    assert DEFAULT_SCHEMES[-1] == "auto" and "middle-load" in DEFAULT_SCHEMES


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"models": ("nope",)}, ModelError, "unknown model 'nope'"),
        ({"schemes": ("zigzag",)}, ConfigError, "unknown scheme 'zigzag' in --schemes"),
        ({"batch_sizes": (4, 0)}, ConfigError, "must all be >= 1"),
        ({"batch_sizes": (2, 2)}, ConfigError, "repeat a value"),
        ({"num_ranks": 1}, ConfigError, "at least 2 stages"),
        ({"schedule": "round-robin"}, ConfigError, "unknown schedule 'round-robin'"),
        ({"repeats": 0}, ConfigError, "--repeats must be >= 1"),
        ({"input_shape": (1, 0, 28)}, ConfigError, "must be positive sizes"),
    ],
)
def test_bad_settings_are_one_line_errors(
    changes: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        _settings(**changes)
    assert "\n" not in str(caught.value)


def test_more_stages_than_units_fails_before_any_cell(tmp_path: Path) -> None:
    pipeline = FakePipeline()
    with pytest.raises(PartitionError, match="lenet5 has 5 units, too few for 6 stages"):
        run_schemes_study(
            _settings(num_ranks=6, num_microbatches=6), tmp_path, measure=pipeline, quiet=True
        )
    assert pipeline.calls == []


def test_the_study_records_every_cell_and_resumes(tmp_path: Path) -> None:
    settings = _settings()
    pipeline = FakePipeline()
    outcome = run_schemes_study(
        settings, tmp_path, measure=pipeline, predict=FakePredictor(), quiet=True
    )
    assert outcome.measured_now == len(outcome.records) == 16
    assert len(pipeline.calls) == 16  # one launch per cell: 3 repeats x 2 steps each
    assert {call.steps for call in pipeline.calls} == {6}
    record = outcome.records[0]
    assert record["key"] == {"model": "lenet5", "batch_size": 1, "scheme": "equal-load"}
    assert record["step_time_s"]["num_runs"] == 3
    assert record["prediction"]["step_time_s"] > 0
    header = StudyStore(tmp_path).header()
    assert header["kind"] == "schemes" and header["settings"]["num_ranks"] == 2
    assert header["machine"]["torch"]

    again = FakePipeline()
    resumed = run_schemes_study(settings, tmp_path, measure=again, quiet=True)
    assert again.calls == [] and resumed.measured_now == 0 and resumed.resumed == 16
    with pytest.raises(CheckpointError, match="repeats 3 -> 5"):
        run_schemes_study(_settings(repeats=5), tmp_path, measure=again, quiet=True)


def test_an_interrupted_study_measures_only_the_rest(tmp_path: Path) -> None:
    settings = _settings()
    pipeline = FakePipeline()

    def interrupted(spec: RunSpec) -> RunMeasurement:
        if len(pipeline.calls) == 5:
            raise KeyboardInterrupt
        return pipeline(spec)

    with pytest.raises(KeyboardInterrupt):
        run_schemes_study(settings, tmp_path, measure=interrupted, quiet=True)
    assert len(StudyStore(tmp_path).records()) == 5
    rest = FakePipeline()
    outcome = run_schemes_study(settings, tmp_path, measure=rest, quiet=True)
    assert len(rest.calls) == 11 and outcome.resumed == 5
    assert [r["key"] for r in outcome.records] == [c.key for c in schemes_cells(settings)]


def test_the_fastest_scheme_is_the_best_balanced_one(tmp_path: Path) -> None:
    settings = _settings(predict=False)
    outcome = run_schemes_study(settings, tmp_path, measure=FakePipeline(), quiet=True)
    assert all(r["prediction"] is None for r in outcome.records)
    rows = best_per_batch(outcome.records)
    assert len(rows) == 4
    for row in rows:
        times = {}
        for scheme in settings.schemes:
            spec = schemes_spec(
                settings,
                Cell({"model": row["model"], "batch_size": row["batch_size"], "scheme": scheme}),
            )
            if scheme == "auto":
                continue
            partition = partition_for(scheme, num_stages=2, num_units=len(_units(row["model"])))
            times[scheme] = closed_form_step(spec, partition.boundaries)
        assert row["auto_rank"] == 1  # the fake's auto is the exact min-max partition
        assert row["best"] == "auto" or times[row["best"]] == pytest.approx(min(times.values()))


def _units(model: str) -> tuple[float, ...]:
    from _study_fakes import UNIT_MS

    return UNIT_MS[model]


def test_the_report_states_the_fastest_scheme_and_draws_a_plot_per_model(tmp_path: Path) -> None:
    outcome = run_schemes_study(
        _settings(),
        tmp_path,
        measure=FakePipeline(fail_scheme="end-heavy"),
        predict=FakePredictor(),
        quiet=True,
    )
    assert len(outcome.failed) == 4  # end-heavy, every model and batch size
    assert outcome.report_markdown is not None and outcome.report_html is not None
    markdown = outcome.report_markdown.read_text()
    assert markdown.startswith("# Layer distribution schemes")
    for heading in ("## Conclusions", "## lenet5", "## mlp", "## Partition efficiency"):
        assert heading in markdown
    assert "## Failed cells" in markdown and "refused by the fake" in markdown
    assert "lenet5: fastest was auto at batch size 1, 4" in markdown
    assert "auto was the fastest in 4 of 4 pairs" in markdown
    assert "The simulator picked the measured fastest scheme in 4 of 4 pairs" in markdown
    assert "lenet5: auto's partition efficiency: predicted with communication" in markdown
    assert "--input 3x224x224" in markdown  # the shrunken defaults are stated
    for model in ("lenet5", "mlp"):
        image = tmp_path / f"schemes-{model}.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![schemes-{model}](schemes-{model}.png)" in markdown
    page = outcome.report_html.read_text()
    assert page.count('src="data:image/png;base64,') == 2


def test_one_repeat_cannot_tell_a_lead_from_noise(tmp_path: Path) -> None:
    outcome = run_schemes_study(
        _settings(repeats=1, models=("lenet5",)), tmp_path, measure=FakePipeline(), quiet=True
    )
    rows = best_per_batch(outcome.records)
    assert all(row["significant"] is None and row["auto_within_noise"] is None for row in rows)
    markdown = (tmp_path / "report.md").read_text()
    assert "In 2 of 2 pairs a cell kept a single repeat" in markdown
    assert "within one standard deviation of the fastest in" not in markdown
