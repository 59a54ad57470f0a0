"""A corrupt k-fold checkpoint makes its job run from step 0, and the console says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from parnn.cli import cli

KFOLD = [
    "kfold", "--models", "mlp", "--lr-schedules", "constant", "--folds", "2", "--steps", "3",
    "--workers", "1", "--cost", "params", "--quiet", "--json",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_corrupt_checkpoint_is_said_on_the_console(tmp_path: Path) -> None:
    out = tmp_path / "kf"
    first = CliRunner().invoke(cli, [*KFOLD, "--out", str(out)])
    assert first.exit_code == 0, first.output
    records = (out / "jobs.jsonl").read_text().splitlines()
    assert len(records) == 2
    kept, dropped = json.loads(records[0]), json.loads(records[1])
    (out / "jobs.jsonl").write_text(records[0] + "\n")  # the second job is unfinished now
    stem = dropped["job_id"].replace("/", "--")
    checkpoints = [path for path in out.rglob("*") if path.is_dir() and "checkpoint" in str(path)]
    assert checkpoints, list(out.rglob("*"))
    (checkpoints[-1] / f"{stem}.pt").write_bytes(b"not a checkpoint")

    second = CliRunner().invoke(cli, [*KFOLD, "--out", str(out), "--resume"])
    assert second.exit_code == 0, second.output
    warnings = [line for line in second.stderr.splitlines() if line.startswith("parnn: warning:")]
    assert any(dropped["job_id"] in line and "checkpoint" in line for line in warnings), (
        second.stderr
    )
    assert kept["job_id"] != dropped["job_id"]
