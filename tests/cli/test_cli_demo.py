"""`parnn demo`: every scheme and `auto` measured as a 2-stage pipeline beside the reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from parnn.bench.cells import StudyStore
from parnn.bench.studies.demo import DemoSettings
from parnn.cli import cli
from parnn.cli import demo as cli_demo
from parnn.cli.demo import render_demo
from parnn.partition import SCHEMES


@pytest.mark.timeout(400)
def test_demo_measures_every_scheme_and_auto_and_saves_a_plot(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["demo", "--out", str(tmp_path), "--epochs", "3", "--json", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert payload["command"] == "demo" and payload["stages"] == 2
    assert [run["scheme"] for run in payload["runs"]] == [*SCHEMES, "auto"]
    for run in payload["runs"]:
        assert sum(run["units_per_stage"]) == 5 and len(run["units_per_stage"]) == 2
        assert run["samples_per_s"] > 0 and 0.5 < run["val_accuracy"] <= 1.0
    # Schemes with the same partition share one run, so they report the same figures.
    by_partition: dict[tuple[int, ...], set[float]] = {}
    for run in payload["runs"]:
        by_partition.setdefault(tuple(run["partition"]), set()).add(run["samples_per_s"])
    assert all(len(rates) == 1 for rates in by_partition.values())
    assert payload["best_scheme"] in {run["scheme"] for run in payload["runs"]}
    plot = Path(payload["plot_path"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(Path(payload["results_path"]).read_text())
    assert saved["runs"] == payload["runs"] and saved["machine"]["torch"]
    assert len(list(tmp_path.glob("partition-*/trace.json"))) == len(by_partition)
    # The demo is a study: its cells are in the store, and `parnn report` re-renders it.
    assert len(StudyStore(tmp_path).records()) == 1 + len(by_partition)
    (tmp_path / "report.md").unlink()
    rendered = CliRunner().invoke(cli, ["report", str(tmp_path), "--json"])
    assert rendered.exit_code == 0, rendered.output
    report = (tmp_path / "report.md").read_text()
    assert f"Fastest: {payload['best_scheme']}" in report and "![demo](demo.png)" in report


def test_the_cli_default_epochs_are_the_demo_study_s() -> None:
    assert cli_demo.EPOCHS == DemoSettings().epochs


def test_demo_table_names_the_fastest_scheme_and_the_plot(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = {
        "scheme": "end-load",
        "partition": [0, 2, 5],
        "units_per_stage": [2, 3],
        "samples_per_s": 2000.0,
        "step_time_s": 0.016,
        "bubble_fraction": 0.5,
        "val_accuracy": 0.9,
        "speedup_vs_reference": 1.25,
        "stage_compute_s": [0.008, 0.004],
    }
    render_demo(
        {
            "epochs": 3,
            "reference": {"samples_per_s": 1600.0, "val_accuracy": 0.91},
            "runs": [run],
            "best_scheme": "end-load",
            "results_path": "r/demo.json",
            "plot_path": "r/demo.png",
        }
    )
    text = capsys.readouterr().out
    assert "1.25x" in text and "fastest: end-load" in text and "plot: r/demo.png" in text
