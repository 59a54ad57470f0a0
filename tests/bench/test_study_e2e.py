"""One tiny study of each kind on the real pipeline (pinned gloo processes): the commands
run end to end, record every cell and render a report. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from parnn.bench.cells import StudyStore
from parnn.cli import ParnnGroup, study_pipeline

pytestmark = pytest.mark.slow


@click.group(cls=ParnnGroup)
def study() -> None:
    """The study group as the lead attaches it."""


for _command in study_pipeline.STUDY_COMMANDS:
    study.add_command(_command)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Profiles and the comm model, measured once for the three studies."""
    return tmp_path_factory.mktemp("profiles")


def _study(args: list[str], out: Path, cache: Path) -> dict[str, Any]:
    common = ["--input", "1x28x28", "--repeats", "1", "--steps", "1", "--warmup-steps", "1"]
    result = CliRunner().invoke(
        study,
        [*args, *common, "--out", str(out), "--cache-dir", str(cache), "--json", "--quiet"],
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.stderr
    payload: dict[str, Any] = json.loads(result.stdout)
    assert payload["failed"] == 0, payload["results"]
    assert (out / "report.md").exists() and (out / "report.html").exists()
    return payload


@pytest.mark.timeout(300)
def test_schemes_on_the_real_pipeline(tmp_path: Path, cache_dir: Path) -> None:
    args = ["schemes", "--models", "lenet5", "--batch-sizes", "2", "--schemes"]
    args += ["equal-load,auto", "--stages", "2", "--microbatches", "2", "--no-predict"]
    payload = _study(args, tmp_path, cache_dir)
    assert [r["scheme"] for r in payload["results"]] == ["equal-load", "auto"]
    for row in payload["results"]:
        assert row["step_time_s"] > 0 and row["samples_per_s"] > 0
        assert row["boundaries"][0] == 0 and row["boundaries"][-1] == 5  # lenet5: 5 units
    assert payload["best"][0]["scheme"] in ("equal-load", "auto")
    record = StudyStore(tmp_path).records()[0]
    assert record["stages"][0]["boundary_bytes"] > 0 and record["stages"][1]["boundary_bytes"] == 0
    assert all(s["forward_s"] > 0 and s["backward_s"] > 0 for s in record["stages"])
    assert "## lenet5" in (tmp_path / "report.md").read_text()


@pytest.mark.timeout(300)
def test_microbatches_on_the_real_pipeline(tmp_path: Path, cache_dir: Path) -> None:
    args = ["microbatches", "--model", "lenet5", "--stages", "2", "--microbatches", "1,2"]
    args += ["--batch-size", "4", "--partition", "equal-load"]
    payload = _study(args, tmp_path, cache_dir)
    assert [r["microbatches"] for r in payload["results"]] == [1, 2]
    assert all(r["predicted_step_time_s"] > 0 for r in payload["results"])
    assert payload["optimum"][0]["microbatches"] in (1, 2)
    assert any(cache_dir.glob("profile-lenet5-1x28x28-c10-b2-*.json"))  # micro-batch 4 / 2
    assert "optimum m =" in (tmp_path / "report.md").read_text()


@pytest.mark.timeout(300)
def test_scaling_on_the_real_pipeline(tmp_path: Path, cache_dir: Path) -> None:
    args = ["scaling", "--model", "lenet5", "--stages", "1,2", "--batch-size", "4"]
    args += ["--microbatches", "2", "--partition", "equal-load", "--no-predict"]
    payload = _study(args, tmp_path, cache_dir)
    assert [p["stages"] for p in payload["scaling"]] == [1, 2]
    assert payload["scaling"][0]["speedup"] == pytest.approx(1.0)
    assert payload["scaling"][1]["speedup"] > 0
    assert "## Speedup and efficiency" in (tmp_path / "report.md").read_text()
