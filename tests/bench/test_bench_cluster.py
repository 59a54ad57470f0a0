"""A study's cells on a Dask cluster (``--cluster local:2``): the same records as the
cells run here, and a resume skips the cells either executor finished. No timing is
asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from parnn.bench.cells import Cell, StudyStore
from parnn.bench.cluster import CellsFailedError, DaskCells
from parnn.cli import _ParnnGroup, study_pipeline
from parnn.launch import leftover_processes

pytest.importorskip("distributed", reason="dask[distributed] is not installed (parnn[cluster])")
pytestmark = pytest.mark.slow


@click.group(cls=_ParnnGroup)
def study() -> None:
    """The study group as the lead attaches it."""


for _command in study_pipeline.STUDY_COMMANDS:
    study.add_command(_command)

SCALING = ["scaling", "--model", "lenet5", "--stages", "1,2", "--batch-size", "4"]
SMALL = ["--input", "1x28x28", "--repeats", "1", "--steps", "1", "--warmup-steps", "1"]
SMALL += ["--no-predict", "--json", "--quiet"]
# Deterministic parts of a record (times are measured, so they differ run to run).
FIXED = ("cell", "key", "spec", "status", "partition", "samples_per_step")


def _run(out: Path, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(study, [*SCALING, *SMALL, "--out", str(out), *extra])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.stderr
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


@pytest.mark.timeout(400)
def test_cells_on_a_local_cluster_match_and_resume_across_executors(tmp_path: Path) -> None:
    here = _run(tmp_path / "here")
    assert (here["measured"], here["failed"]) == (2, 0)
    local_records = StudyStore(tmp_path / "here").records()

    # Half the study done here, the rest on the cluster: the finished cell is skipped.
    out = tmp_path / "mixed"
    (out).mkdir()
    for name in ("study.json",):
        (out / name).write_text((tmp_path / "here" / name).read_text())
    (out / "cells.jsonl").write_text(json.dumps(local_records[0]) + "\n")
    mixed = _run(out, "--cluster", "local:2")
    assert (mixed["measured"], mixed["resumed"], mixed["failed"]) == (1, 1, 0)
    records = StudyStore(out).records()
    assert [r["cell"] for r in records] == [r["cell"] for r in local_records]
    cluster_record, local_record = records[1], local_records[1]
    assert set(cluster_record) == set(local_record)  # the same record, whichever ran it
    assert {k: cluster_record[k] for k in FIXED} == {k: local_record[k] for k in FIXED}
    assert cluster_record["step_time_s"]["mean"] > 0
    assert (out / "report.md").exists()

    # And back: everything is finished, whichever executor ran it.
    again = _run(out)
    assert (again["measured"], again["resumed"]) == (0, 2)
    assert leftover_processes() == []


def _explode(cell: Cell) -> dict[str, Any]:
    raise RuntimeError(f"no luck for {cell.id}")


@pytest.mark.timeout(180)
def test_a_cell_that_fails_on_the_cluster_stops_the_study_naming_it(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.open("toy", {})
    executor = DaskCells("local:1", cores=lambda cell: 1)
    with pytest.raises(CellsFailedError, match=r"1 of 1 cells failed.*no luck for x=1"):
        store.run([Cell({"x": 1})], _explode, quiet=True, executor=executor)
    assert store.records() == []  # nothing recorded: re-running retries it


def test_a_relative_out_is_refused_with_a_remote_cluster(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        study, [*SCALING, *SMALL, "--out", "relative/dir", "--cluster", "tcp://10.0.0.1:8786"]
    )
    assert result.exit_code == 2
    assert "is relative" in result.stderr and "absolute path" in result.stderr
    assert not Path("relative/dir").exists()
