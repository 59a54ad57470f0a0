"""The micro-batches study on a fake pipeline: settings, cells, optimum m, report."""

from __future__ import annotations

from pathlib import Path

import pytest
from _study_fakes import FakePipeline, FakePredictor, closed_form_step

from parnn.bench.studies.microbatches import (
    MicrobatchesSettings,
    microbatches_cells,
    microbatches_spec,
    run_microbatches_study,
)
from parnn.bench.studies.microbatches_report import optimum
from parnn.bench.studies.runs import RunSpec
from parnn.errors import ConfigError, PartitionError


def _settings(**changes: object) -> MicrobatchesSettings:
    values: dict[str, object] = {
        "model": "dummy16",
        "input_shape": (1, 8, 8),
        "num_ranks": (1, 4),
        "microbatches": (1, 2, 4, 8, 16, 32),
        "batch_size": 64,
        "partition": "equal-load",
        "repeats": 2,
        "steps": 1,
    }
    values.update(changes)
    return MicrobatchesSettings(**values)  # type: ignore[arg-type]


def test_cells_sweep_stages_then_microbatches_on_one_minibatch() -> None:
    settings = _settings()
    cells = microbatches_cells(settings)
    assert [c.key for c in cells[:2]] == [
        {"stages": 1, "microbatches": 1},
        {"stages": 1, "microbatches": 2},
    ]
    assert len(cells) == 12
    spec = microbatches_spec(settings, cells[-1])
    assert (spec.batch_size, spec.num_microbatches, spec.microbatch_size) == (64, 32, 2)
    assert spec.schedule == "gpipe"  # the GPipe study's schedule by default


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 48}, "does not split into 32 equal micro-batches.*try --batch-size 64"),
        ({"microbatches": ()}, "--microbatches is empty"),
        ({"partition": "zigzag"}, "unknown partition 'zigzag'"),
        ({"partition": "0,8,16"}, "has 2 stages but --stages is 1,4"),
        ({"num_ranks": (0,)}, "--stages must all be >= 1"),
    ],
)
def test_bad_settings_are_one_line_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(**changes)


def test_explicit_boundaries_are_checked_against_the_model(tmp_path: Path) -> None:
    settings = _settings(num_ranks=(2,), partition="0,8,17")
    with pytest.raises(PartitionError, match="end at 17 but the model has 16 units"):
        run_microbatches_study(settings, tmp_path, measure=FakePipeline(), quiet=True)


def test_the_optimum_m_and_the_report(tmp_path: Path) -> None:
    settings = _settings()
    outcome = run_microbatches_study(
        settings, tmp_path, measure=FakePipeline(), predict=FakePredictor(), quiet=True
    )
    assert outcome.measured_now == 12 and not outcome.failed
    four = [r for r in outcome.records if r["key"]["stages"] == 4]
    # The fake's closed form with a per-micro-batch overhead is U-shaped in m.
    expected = min(
        settings.microbatches,
        key=lambda m: closed_form_step(
            microbatches_spec(
                settings, microbatches_cells(settings)[6 + settings.microbatches.index(m)]
            ),
            (0, 4, 8, 12, 16),
        ),
    )
    assert 1 < expected < 32
    assert optimum(four)["key"]["microbatches"] == expected
    markdown = (tmp_path / "report.md").read_text()
    assert f"4 stages: optimum m = {expected}" in markdown
    assert "then rose to" in markdown  # the U shape is named
    assert "1 stage: optimum m = 1" in markdown  # no overlap: splitting only costs
    assert "## 1 stage: partition efficiency" not in markdown
    assert "The simulator put the optimum at m =" in markdown
    for heading in (
        "## 4 stages: times",
        "## 4 stages: compute, communication and boundary bytes",
        "## 4 stages: partition efficiency",
    ):
        assert heading in markdown
    assert "| stage 0 → 1 | 256.0 KiB |" in markdown  # 4096 B x 64 samples at m=1
    assert "| efficiency |" in markdown and "with comm" in markdown
    assert "With the same cut, the first boundary carried 256.0 KiB per micro-batch at m=1" in (
        markdown
    )
    assert "changed with m" not in markdown  # equal-load cuts alike for every m
    for name in ("k4-times", "k4-stages", "k4-comm", "k1-times", "k1-stages"):
        assert (tmp_path / f"microbatches-{name}.png").exists()
    assert not (tmp_path / "microbatches-k1-comm.png").exists()  # one stage: no boundary
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 5


def test_a_failed_cell_is_reported_and_the_rest_still_run(tmp_path: Path) -> None:
    pipeline = FakePipeline(fail_scheme="equal-load")
    outcome = run_microbatches_study(
        _settings(num_ranks=(2,), microbatches=(1, 2)), tmp_path, measure=pipeline, quiet=True
    )
    assert len(outcome.failed) == 2
    markdown = (tmp_path / "report.md").read_text()
    assert "## Failed cells" in markdown and "No cell finished successfully" in markdown


def test_a_cost_aware_partition_is_chosen_once_per_number_of_stages(tmp_path: Path) -> None:
    asked: list[tuple[int, int]] = []

    def resolve(spec: RunSpec) -> tuple[int, ...]:
        asked.append((spec.num_ranks, spec.num_microbatches))
        return tuple(16 * i // spec.num_ranks for i in range(spec.num_ranks + 1))

    settings = _settings(partition="auto", num_ranks=(2, 4), microbatches=(2, 8))
    pipeline = FakePipeline()
    run_microbatches_study(
        settings, tmp_path / "fixed", measure=pipeline, resolve=resolve, quiet=True
    )
    assert asked == [(2, 2), (4, 2)]  # at the smallest m, once per number of stages
    assert [call.partition for call in pipeline.calls] == ["0,8,16"] * 2 + ["0,4,8,12,16"] * 2
    assert "chosen once per number of stages" in (tmp_path / "fixed" / "report.md").read_text()

    asked.clear()
    again = FakePipeline()
    run_microbatches_study(
        _settings(partition="auto", repartition=True, num_ranks=(2,), microbatches=(2, 8)),
        tmp_path / "per-m",
        measure=again,
        resolve=resolve,
        quiet=True,
    )
    assert asked == [] and {call.partition for call in again.calls} == {"auto"}
