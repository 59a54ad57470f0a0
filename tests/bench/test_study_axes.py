"""`parnn study axes`: serial, data-parallel and pipeline-parallel on the same cores, end to
end with real processes; the conclusion and the throughput measure on made-up numbers."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from parnn.bench.cells import Cell, StudyStore
from parnn.bench.studies.axes import (
    KIND,
    AxesConfig,
    AxesResult,
    VariantRun,
    axes_result,
    median_step_rate,
)
from parnn.bench.studies.axes_report import conclude
from parnn.cli import cli
from parnn.data_parallel.result import LossCurve

PAYLOAD_KEYS = {
    "command", "model", "data", "train_samples", "val_samples", "parameters", "settings",
    "rows", "conclusion", "files", "machine",
}  # fmt: skip
ROW_KEYS = {
    "variant", "label", "axis", "ranks", "threads", "samples_per_s",
    "speedup_vs_serial", "efficiency", "mean_samples_per_s", "accuracy",
    "accuracy_delta_points", "peak_rss_mib", "peak_rss_mib_per_rank", "total_rss_mib",
    "steps", "samples", "wall_s", "bubble_fraction",
}  # fmt: skip


@pytest.mark.timeout(240)
def test_cli_study_axes_end_to_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["study", "axes", "--model", "lenet5", "--data", "digits", "--engines",
         "ddp,hogwild,pipeline", "--ranks", "2", "--batch-size", "32", "--steps", "6",
         "--out", str(tmp_path), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.stdout)
    assert set(payload) == PAYLOAD_KEYS and payload["command"] == "study axes"
    rows = {row["variant"]: row for row in payload["rows"]}
    assert list(rows) == ["serial", "ddp", "hogwild", "pipeline"]
    for row in rows.values():
        assert set(row) == ROW_KEYS
        assert 0.0 <= row["accuracy"] <= 1.0 and row["samples_per_s"] > 0
        assert row["samples"] == 6 * 32  # the same training for every variant
        assert len(row["peak_rss_mib_per_rank"]) == row["ranks"]
        assert all(mib > 10 for mib in row["peak_rss_mib_per_rank"])
    assert (rows["ddp"]["ranks"], rows["pipeline"]["ranks"]) == (2, 2)
    assert (rows["serial"]["ranks"], rows["ddp"]["threads"]) == (1, 1)
    assert rows["serial"]["speedup_vs_serial"] == 1.0
    # ddp and the pipeline take the reference trainer's very updates.
    for variant in ("ddp", "pipeline"):
        assert abs(rows[variant]["accuracy"] - rows["serial"]["accuracy"]) <= 0.02
    fastest = max(payload["rows"], key=lambda row: row["samples_per_s"])
    assert payload["conclusion"][0].startswith(f"Fastest: {fastest['label']} ")
    assert Path(payload["files"]["plot"]).stat().st_size > 0
    saved = json.loads(Path(payload["files"]["result"]).read_text())
    assert set(saved["runs"]) == set(rows) and saved["rows"] == payload["rows"]
    # The variants are cells of the study's store: `parnn report` renders the same table.
    assert [r["key"]["variant"] for r in StudyStore(tmp_path).records()] == list(rows)
    (tmp_path / "report.md").unlink()
    assert CliRunner().invoke(cli, ["report", str(tmp_path)]).exit_code == 0
    report = (tmp_path / "report.md").read_text()
    assert payload["conclusion"][0] in report
    assert (
        f"| {rows['ddp']['label']} | data | 2 x 1 | {rows['ddp']['samples_per_s']:,.0f} |" in report
    )
    # Running the same command again resumes the study: nothing runs again.
    records = StudyStore(tmp_path).records()
    again = CliRunner().invoke(
        cli,
        ["study", "axes", "--model", "lenet5", "--data", "digits", "--engines",
         "ddp,hogwild,pipeline", "--ranks", "2", "--batch-size", "32", "--steps", "6",
         "--out", str(tmp_path), "--json"],
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["rows"] == payload["rows"]
    assert StudyStore(tmp_path).records() == records


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--engines", "serial,bogus"], "unknown bogus"),
        (["--ranks", "1"], "--ranks 2"),
        (["--batch-size", "30", "--microbatches", "4"], "not divisible by 4 micro-batches"),
    ],
)
def test_cli_study_axes_bad_input_one_line(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(cli, ["study", "axes", *args])
    assert result.exit_code == 2
    assert expected in result.output and len(result.output.strip().splitlines()) == 1


def _run(variant: str, label: str, rate: float, accuracy: float, ranks: int) -> VariantRun:
    return VariantRun(
        variant=variant, label=label, ranks=ranks, threads=1,
        samples_per_s=rate, mean_samples_per_s=None, accuracy=accuracy,
        peak_rss_mib_per_rank=[300.0] * ranks, steps=100, samples=6400, wall_s=5.0,
        bubble_fraction=0.4 if variant == "pipeline" else None,
    )  # fmt: skip


def test_conclusion_follows_the_numbers() -> None:
    runs = [
        _run("serial", "serial 1t", 1000.0, 0.90, 1),
        _run("ddp", "ddp x2", 1500.0, 0.90, 2),
        _run("hogwild", "hogwild x2", 1900.0, 0.85, 2),
        _run("pipeline", "pipeline x2", 1200.0, 0.90, 2),
    ]
    result = AxesResult(
        config=AxesConfig(variants=("serial", "ddp", "hogwild", "pipeline")),
        runs=runs, train_samples=1000, val_samples=200, parameters=60_000,
        machine={"load_average_1m": 0.1, "usable_cores": 2},
    )  # fmt: skip
    lines = conclude(result)
    assert lines[0].startswith("Fastest: hogwild x2 at 1,900 samples/s, 1.90x serial")
    assert any("hogwild x2 is 1.58x pipeline x2" in line for line in lines)
    accuracy = next(line for line in lines if line.startswith("Accuracy"))
    assert "hogwild x2 (-5.00)" in accuracy and "ddp x2, pipeline x2 match it" in accuracy
    assert not any(line.startswith("Caveat") for line in lines)  # 98 steps, idle machine


def test_a_study_recorded_under_the_old_names_resumes_and_renders(tmp_path: Path) -> None:
    # Written before the renames: settings num_processes (now num_ranks), runs with
    # processes / threads_per_process / peak_rss_mib_per_process (now ranks / threads /
    # peak_rss_mib_per_rank).
    config = AxesConfig(variants=("serial", "serial-threads", "ddp"))
    settings = {**config.to_dict(), "train_samples": 1000, "val_samples": 200, "parameters": 9}
    settings["num_processes"] = settings.pop("num_ranks")
    store = StudyStore(tmp_path)
    store.open(KIND, settings)
    runs = [
        _run("serial", "serial 1t", 1000.0, 0.90, 1),
        _run("serial-threads", "serial 2t", 1100.0, 0.90, 1),
        _run("ddp", "ddp x2", 1500.0, 0.90, 2),
    ]
    runs[1].threads = 2
    for run in runs:
        record = asdict(run)
        record["processes"] = record.pop("ranks")
        record["threads_per_process"] = record.pop("threads")
        record["peak_rss_mib_per_process"] = record.pop("peak_rss_mib_per_rank")
        store.add(Cell({"variant": run.variant}), record)
    header = StudyStore(tmp_path).header()
    result = axes_result(header["settings"], StudyStore(tmp_path).records(), {})
    assert result.runs == runs
    assert [(row["ranks"], row["threads"]) for row in result.rows()] == [(1, 1), (1, 2), (2, 1)]
    assert all("processes" not in row for row in result.rows())
    outcome = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    report = (tmp_path / "report.md").read_text()
    assert "| serial 2t | threads | 1 x 2 | 1,100 | 1.10x |" in report
    assert "| ddp x2 | data | 2 x 1 | 1,500 | 1.50x |" in report
    assert "one process with 2 intra-op threads" in report


def test_median_step_rate_skips_warmup_and_groups_hogwild_updates() -> None:
    # Two slow warm-up steps, then 10 ms steps of 32 samples: 3200 samples/s.
    times = [0.5, 0.6] + [0.6 + 0.01 * step for step in range(1, 9)]
    curve = LossCurve(time_s=times, samples=[32 * (i + 1) for i in range(10)], loss=[1.0] * 10)
    assert median_step_rate(curve, points_per_step=1, warmup_steps=2) == pytest.approx(3200)
    # Hogwild: two workers' updates of 16 samples each end 5 ms apart: still 3200 samples/s.
    hogwild = LossCurve(
        time_s=[0.005 * (i + 1) for i in range(20)],
        samples=[16 * (i + 1) for i in range(20)],
        loss=[1.0] * 20,
    )
    assert median_step_rate(hogwild, points_per_step=2, warmup_steps=2) == pytest.approx(3200)
