"""`parnn study pipedream`: its settings are checked, and a short accuracy run of the three
sides (1f1b, pipedream, pipedream + vertical sync) yields comparable curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from parnn.bench.studies.pipedream import PipeDreamStudyConfig
from parnn.cli import cli
from parnn.errors import ConfigError


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match=">= 2 stages"):
        PipeDreamStudyConfig(stages=(1,))
    with pytest.raises(ConfigError, match="unknown parts"):
        PipeDreamStudyConfig(parts=("speed",))
    with pytest.raises(ConfigError, match="unknown models"):
        PipeDreamStudyConfig(models=("vgg16",))


@pytest.mark.timeout(400)
def test_the_accuracy_part_compares_every_side_with_the_synchronous_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["study", "pipedream", "--parts", "accuracy", "--epochs", "1", "--json",
         "--out", str(tmp_path)],
    )  # fmt: skip
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
