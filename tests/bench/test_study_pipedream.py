"""`parnn study pipedream`: its settings are checked, and a short accuracy run of the three
sides (1f1b, pipedream, pipedream + vertical sync) yields comparable curves; the study runs
on the one store (a re-run resumes, other settings are refused, `parnn report` renders it);
the throughput rows are assembled from the cells on made-up numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from parnn.bench.cells import StudyStore
from parnn.bench.render import report_kinds
from parnn.bench.studies.pipedream import PipeDreamStudyConfig, study_cells
from parnn.bench.studies.pipedream_report import KIND, PLOT_FILE, pipedream_payload
from parnn.cli import cli
from parnn.errors import ConfigError

ACCURACY = ["study", "pipedream", "--parts", "accuracy", "--epochs", "1", "--json"]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match=">= 2 stages"):
        PipeDreamStudyConfig(stages=(1,))
    with pytest.raises(ConfigError, match="unknown parts"):
        PipeDreamStudyConfig(parts=("speed",))
    with pytest.raises(ConfigError, match="unknown models"):
        PipeDreamStudyConfig(models=("vgg16",))


@pytest.mark.timeout(600)
def test_the_accuracy_part_compares_every_side_with_the_synchronous_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [*ACCURACY, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert payload["command"] == "study pipedream"
    curves = payload["accuracy"]["curves"]
    assert sorted(curves) == ["1f1b", "pipedream", "pipedream +vsync"]
    for curve in curves.values():
        assert [p["epoch"] for p in curve["points"]] == [1]
        assert 0.0 <= curve["final_accuracy"] <= 1.0
    assert curves["1f1b"]["accuracy_minus_sync_points"] == 0.0
    assert (tmp_path / "pipedream.json").is_file()

    # Each side is a cell of the study's store; a re-run after an interruption runs only
    # the side not recorded and keeps the others' curves.
    store = StudyStore(tmp_path)
    assert store.header()["kind"] == KIND
    assert [r["key"]["side"] for r in store.records()] == list(curves)
    lines = store.cells_path.read_text().splitlines(keepends=True)
    store.cells_path.write_text("".join(lines[:2]))
    again = CliRunner().invoke(cli, [*ACCURACY, "--out", str(tmp_path)])
    assert again.exit_code == 0, again.output
    resumed = json.loads(again.output.strip().splitlines()[-1])["accuracy"]["curves"]
    assert resumed["1f1b"] == curves["1f1b"] and resumed["pipedream"] == curves["pipedream"]
    assert len(store.records()) == 3

    # Other settings in the same directory are refused, naming the difference.
    other = CliRunner().invoke(cli, [*ACCURACY[:-2], "2", "--json", "--out", str(tmp_path)])
    assert other.exit_code == 2 and "epochs 1 -> 2" in other.output

    # `parnn report DIR` renders the accuracy table and plot from the store alone.
    for name in ("report.md", PLOT_FILE):
        (tmp_path / name).unlink()
    assert CliRunner().invoke(cli, ["report", str(tmp_path)]).exit_code == 0
    report = (tmp_path / "report.md").read_text()
    final = 100 * resumed["pipedream +vsync"]["final_accuracy"]
    assert f"| pipedream +vsync | {final:.2f}% |" in report
    assert (tmp_path / PLOT_FILE).stat().st_size > 0


def test_the_study_is_a_kind_parnn_report_knows() -> None:
    assert KIND in report_kinds()


def test_the_cells_run_in_order_and_the_schedules_rotate_with_the_repeat() -> None:
    config = PipeDreamStudyConfig(stages=(2, 4), repeats=2, models=("lenet5",))
    keys = [cell.key for cell in study_cells(config)]
    assert [key["part"] for key in keys] == ["predict"] * 2 + ["throughput"] * 12 + ["accuracy"] * 3
    first = [key["schedule"] for key in keys[2:8]]
    assert first == ["gpipe", "1f1b", "pipedream", "1f1b", "pipedream", "gpipe"]
    assert len({str(sorted(key.items())) for key in keys}) == len(keys)  # every cell unique


def _throughput_record(repeat: int, schedule: str, steady: float, whole: float) -> dict[str, Any]:
    return {
        "key": {"part": "throughput", "model": "lenet5 digits", "stages": 2,
                "repeat": repeat, "schedule": schedule},
        "workload": {"label": "lenet5 digits"},
        "oversubscribed": False,
        "partition": [0, 3, 5],
        "run": {"schedule": schedule, "samples_per_s": steady, "train_samples_per_s": whole,
                "bubble_fraction": 0.25},
    }  # fmt: skip


def test_throughput_rows_take_the_ratio_per_repeat_once_every_run_finished() -> None:
    settings = {"parts": ["throughput"], "repeats": 2}
    records = [
        _throughput_record(repeat, schedule, steady, whole)
        for repeat, speeds in enumerate([(100, 200, 300), (120, 240, 240)])
        for schedule, steady, whole in zip(
            ("gpipe", "1f1b", "pipedream"), speeds, speeds, strict=True
        )
    ]
    (row,) = pipedream_payload(settings, records)["throughput"]["rows"]
    assert row["pipedream_vs_1f1b_per_repeat"] == [1.5, 1.0]
    assert row["pipedream_vs_1f1b"]["median"] == 1.25
    assert [run["samples_per_s"] for run in row["runs"]["1f1b"]] == [200, 240]
    # one run missing: the row waits for it
    assert pipedream_payload(settings, records[:-1])["throughput"]["rows"] == []


def test_each_microbatch_count_is_its_own_cell_and_row() -> None:
    """m = 4 keeps the keys of a store made before the choice; m = 2 is a cell (and a
    throughput row) of its own, of 8-sample micro-batches."""
    config = PipeDreamStudyConfig(repeats=1, models=("lenet5",), microbatches=(2, 4))
    keys = [cell.key for cell in study_cells(config) if cell.key["part"] != "accuracy"]
    assert [key.get("microbatches", 4) for key in keys] == [2, 4] + [2] * 3 + [4] * 3
    assert "microbatches" not in keys[1]
    assert len({str(sorted(key.items())) for key in keys}) == len(keys)
    records = []
    for m, speeds in ((2, (100, 100, 150)), (4, (100, 120, 130))):
        for schedule, speed in zip(("gpipe", "1f1b", "pipedream"), speeds, strict=True):
            record = _throughput_record(0, schedule, speed, speed)
            if m != 4:
                record["key"]["microbatches"] = m
            records.append(record)
    rows = pipedream_payload({"parts": ["throughput"], "repeats": 1}, records)["throughput"]
    by_m = {row["microbatches"]: row for row in rows["rows"]}
    assert by_m[2]["pipedream_vs_1f1b"]["median"] == 1.5
    assert by_m[4]["pipedream_vs_1f1b"]["median"] == pytest.approx(130 / 120)
    with pytest.raises(ConfigError, match="microbatches"):
        PipeDreamStudyConfig(microbatches=(0,))
