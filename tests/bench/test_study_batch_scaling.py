"""The batch-size scaling study: parsing, regime location, the LR hill climb, and a small
end-to-end run that resumes from its own results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from parnn.bench.studies.batch_scaling import (
    ScalingPoint,
    Trial,
    hill_climb,
    locate_regimes,
    parse_batch_sizes,
)
from parnn.cli import cli
from parnn.errors import ConfigError


def test_parse_batch_sizes() -> None:
    assert parse_batch_sizes("8,16,...,1024") == (8, 16, 32, 64, 128, 256, 512, 1024)
    assert parse_batch_sizes("4,12,...,100") == (4, 12, 36)
    assert parse_batch_sizes("8, 32,128") == (8, 32, 128)
    for bad in ("8,...", "16,8", "a,b", "8,12,...,64", ""):
        with pytest.raises(ConfigError, match="bad batch sizes"):
            parse_batch_sizes(bad)


def _point(batch: int, steps: int | None) -> ScalingPoint:
    return ScalingPoint(batch, 0.1 if steps else None, steps, None, None, 1)


def test_regimes_from_slopes() -> None:
    points = [_point(8, 1600), _point(16, 800), _point(32, 420), _point(64, 300),
              _point(128, 290), _point(256, 295), _point(512, None)]  # fmt: skip
    spans = locate_regimes(points)
    assert [(s["regime"], s["from_batch"], s["to_batch"]) for s in spans] == [
        ("perfect scaling", 8, 32),
        ("diminishing returns", 32, 64),
        ("maximal data parallelism", 64, 256),
        ("target not reached within the budget", 512, 512),
    ]
    assert spans[0]["slopes"][0] == pytest.approx(-1.0)


def testhill_climb_finds_the_best_rate() -> None:
    steps_by_index = {0: None, 1: 400, 2: 250, 3: 180, 4: None}
    calls: list[int] = []

    def attempt(index: int) -> Trial:
        calls.append(index)
        steps = steps_by_index[index]
        return Trial(8, 0.1, steps, steps or 10, 0.5, 1, "target" if steps else "budget", 0.0)

    assert hill_climb(attempt, 1, 5) == 3
    assert calls == [1, 2, 3, 4]  # climbed up while it improved, never tried below
    calls.clear()
    assert hill_climb(attempt, 4, 5) == 3 and calls == [4, 3, 2]
    assert hill_climb(lambda index: Trial(8, 0.1, None, 1, 0.1, 1, "budget", 0.0), 2, 5) is None


@pytest.mark.timeout(120)
def test_batch_scaling_cli_runs_and_resumes(tmp_path: Path) -> None:
    args = ["study", "batch-scaling", "--model", "mlp", "--data", "digits", "--input", "1x8x8",
            "--batch-sizes", "16,32,...,64", "--target-accuracy", "0.85", "--lrs", "0.03,0.1",
            "--max-epochs", "8", "--out", str(tmp_path), "--json"]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout)
    assert [point["batch_size"] for point in payload["points"]] == [16, 32, 64]
    assert all(point["steps"] for point in payload["points"])
    assert payload["regimes"] and Path(payload["files"]["plot"]).stat().st_size > 0
    trials = (tmp_path / "cells.jsonl").read_text().splitlines()
    again = CliRunner().invoke(cli, args)  # resumes: every trial is already on disk
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["points"] == payload["points"]
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == trials
    # The report renders from the store alone, with the points the run found.
    (tmp_path / "report.md").unlink()
    assert CliRunner().invoke(cli, ["report", str(tmp_path)]).exit_code == 0
    report = (tmp_path / "report.md").read_text()
    for point in payload["points"]:
        assert f"| {point['batch_size']} | {point['best_lr']:g} | {point['steps']:,} |" in report
    other = CliRunner().invoke(cli, [*args[:-3], "--target-accuracy", "0.8", "--out",
                                     str(tmp_path), "--json"])  # fmt: skip
    assert other.exit_code == 2 and "target_accuracy 0.85 -> 0.8" in other.stderr
