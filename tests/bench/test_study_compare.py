"""`parnn dp --compare` as a study on the one store, with real processes: each engine a
cell recorded as it finishes, a re-run that skips the engines already run, other settings
refused, and `parnn report DIR` rendering the comparison from its store alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from parnn.bench.cells import StudyStore
from parnn.bench.render import report_kinds
from parnn.bench.studies.compare import compare_data_parallel, parse_compare_list
from parnn.bench.studies.compare_report import KIND, PLOT_FILES, ComparedRun, comparison_of
from parnn.cli import cli
from parnn.data_parallel.config import DataParallelConfig
from parnn.errors import CheckpointError, ConfigError

NAMES = parse_compare_list("ddp")  # serial 1t, serial 2t, ddp x2
DATA: dict[str, Any] = {
    "model": "mlp",
    "data": "digits",
    "input_shape": (1, 8, 8),
    "num_samples": 200,
    "quiet": True,
}


def _base(steps: int = 4) -> DataParallelConfig:
    return DataParallelConfig.of(engine="ddp", num_ranks=2, batch_size=16, steps=steps)


@pytest.mark.timeout(240)
def test_a_rerun_runs_only_the_engines_not_recorded_and_renders_the_same_rows(
    tmp_path: Path,
) -> None:
    payload = compare_data_parallel(_base(), NAMES, out=tmp_path, **DATA)
    store = StudyStore(tmp_path)
    assert store.header()["kind"] == KIND
    records = store.records()
    assert [record["key"]["engine"] for record in records] == NAMES
    labels = [row["label"] for row in payload["speedup"]]
    assert labels == ["serial 1t", "serial 2t", "ddp x2"]
    assert [run["label"] for run in payload["runs"]] == labels
    assert all("cpu_trace" not in run for run in payload["runs"])
    # the rows are computed from the records: the store alone gives the same table
    assert comparison_of(NAMES, records).speedups() == payload["speedup"]
    saved = json.loads(Path(payload["files"]["result"]).read_text())
    assert saved["speedup"] == payload["speedup"]
    # the saved runs are the records whole, CPU samples included where a run has them
    assert saved["runs"] == comparison_of(NAMES, records).to_dict(cpu_trace=True)["runs"]

    # Interrupted after two engines: the re-run measures ddp alone, keeps the others.
    lines = store.cells_path.read_text().splitlines(keepends=True)
    store.cells_path.write_text("".join(lines[:2]))
    heard: list[str] = []
    again = compare_data_parallel(
        _base(), NAMES, out=tmp_path, on_run=lambda run: heard.append(run.label), **DATA
    )
    assert heard == ["ddp x2"]
    assert again["runs"][:2] == payload["runs"][:2]  # read back, not re-run
    assert [r["key"]["engine"] for r in store.records()] == NAMES
    # ddp reproduces serial's updates: the same validation accuracy, run twice
    rows = again["speedup"]
    assert rows[2]["accuracy"] == pytest.approx(rows[0]["accuracy"], abs=0.01)
    assert rows[2]["accuracy"] == pytest.approx(payload["speedup"][2]["accuracy"], abs=1e-9)

    # A full store: nothing runs, the same numbers come back.
    heard.clear()
    third = compare_data_parallel(
        _base(), NAMES, out=tmp_path, on_run=lambda run: heard.append(run.label), **DATA
    )
    assert heard == [] and third["speedup"] == again["speedup"]

    # Other settings in the same directory are refused, naming the difference.
    with pytest.raises(CheckpointError, match=r"steps 4 -> 5"):
        compare_data_parallel(_base(steps=5), NAMES, out=tmp_path, **DATA)
    with pytest.raises(CheckpointError, match=r"engines"):
        compare_data_parallel(_base(), parse_compare_list("hogwild"), out=tmp_path, **DATA)

    # `parnn report DIR` renders the report and redraws the plots from the store.
    for file in [*PLOT_FILES.values(), "report.md", "report.html"]:
        (tmp_path / file).unlink()
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report.md").read_text()
    for row in rows:
        assert f"| {row['label']} | {row['ranks']} x {row['threads']} | " in report
    assert all((tmp_path / file).stat().st_size > 0 for file in PLOT_FILES.values())
    assert "Not run yet" not in report


def test_the_comparison_is_a_kind_parnn_report_knows() -> None:
    assert KIND in report_kinds()


@pytest.mark.timeout(60)
def test_a_directory_holding_something_else_is_refused_unless_overwritten(
    tmp_path: Path,
) -> None:
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(ConfigError, match="--overwrite"):
        compare_data_parallel(_base(), NAMES, out=tmp_path, **DATA)
    assert not (tmp_path / "study.json").exists()


def test_a_compared_run_reads_back_from_its_record() -> None:
    record = {
        "result": {
            "label": "ddp x2",
            "engine": "ddp",
            "model": "mlp",
            "data": "digits",
            "samples_per_s": 120.5,
            "val": None,
            "cpu": {"mean_total_percent": 50.0},
            "curve": {"time_s": [0.1, 0.2], "samples": [16, 32], "loss": [2.3, 2.1]},
            "cpu_trace": {
                "interval_s": 0.25,
                "times_s": [0.0, 0.25],
                "per_core": [[10.0, 20.0], [30.0, 40.0]],
                "total": [15.0, 35.0],
                "process": [5.0, 6.0],
            },
        },
        "ranks": 2,
        "threads": 1,
        "independent": False,
    }
    run = ComparedRun.from_record(record)
    assert run.to_record() == record
    assert run.accuracy is None and run.samples_per_s == 120.5
    assert run.curve.samples == [16, 32] and len(run.curve) == 2
    trace = run.cpu
    assert trace is not None and trace.num_cores == 2 and trace.total == [15.0, 35.0]
    assert "cpu_trace" not in run.to_dict() and "cpu_trace" in run.to_dict(cpu_trace=True)


def _old_record(name: str, threads: int, samples_per_s: float) -> dict[str, Any]:
    """A serial run's record as stored before the renames (processes, threads_per_process)."""
    result = {
        "label": f"serial {threads}t", "engine": "serial", "samples_per_s": samples_per_s,
        "train_s": 1.0, "val": None, "ranks": [{"peak_rss_mib": 300.0}],
    }  # fmt: skip
    return {"cell": f"engine={name}", "key": {"engine": name}, "result": result,
            "processes": 1, "threads_per_process": threads, "independent": False}  # fmt: skip


def test_records_stored_under_the_old_names_read_back_under_the_new() -> None:
    records = [_old_record("serial", 1, 100.0), _old_record("serial-threads", 2, 150.0)]
    comparison = comparison_of(["serial", "serial-threads"], records)
    assert [(run.ranks, run.threads) for run in comparison.runs] == [(1, 1), (1, 2)]
    assert "processes" not in comparison.runs[0].to_record()
    rows = comparison.speedups()
    assert [(row["ranks"], row["threads"]) for row in rows] == [(1, 1), (1, 2)]
    # the baselines are told apart by their threads: 1 thread and every core's threads
    assert [row["speedup_vs_1_thread"] for row in rows] == [1.0, 1.5]
    assert rows[0]["speedup_vs_all_cores"] == pytest.approx(100 / 150, abs=0.001)
