"""`parnn demo`: the plan of this machine, every axis's best verified beside one thread, the
measured winner, and whether the plan picked it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from parnn.bench.cells import StudyStore
from parnn.bench.studies.demo import DemoSettings, demo_runs, run_demo
from parnn.bench.studies.demo_report import demo_payload
from parnn.cli import cli
from parnn.cli import demo as cli_demo
from parnn.cli.demo import render_demo


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_plans_verifies_every_axis_and_names_the_measured_winner(tmp_path: Path) -> None:
    out, cache = tmp_path / "demo", tmp_path / "cache"
    result = CliRunner().invoke(
        cli,
        ["demo", "--out", str(out), "--epochs", "1", "--cache-dir", str(cache), "--json",
         "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert payload["command"] == "demo" and payload["model"] == "lenet5"
    assert payload["data"] == "digits" and payload["batch_size"] == 64
    axes = payload["axes"]
    roles = [run["role"] for run in axes]
    assert roles[0] == "baseline" and axes[0]["label"] == "1 process x 1t"
    if payload["cores"] >= 2:  # one process with all threads, data parallel, pipeline
        assert {"threads", "data", "pipeline"} <= set(roles)
        assert any(run["label"] == f"1 process x {payload['cores']}t" for run in axes)
    assert payload["candidates"] >= len(axes)
    for run in axes:
        assert run["error"] is None, run
        assert run["predicted_samples_per_s"] > 0 and run["measured_samples_per_s"] > 0
        assert 0.3 < run["val_accuracy"] <= 1.0  # one epoch of digits, every engine learns
        assert run["measured_speedup"] == pytest.approx(
            run["measured_samples_per_s"] / axes[0]["measured_samples_per_s"]
        )
        assert run["prediction_error"] == pytest.approx(
            (run["predicted_samples_per_s"] - run["measured_samples_per_s"])
            / run["measured_samples_per_s"]
        )
    fastest = max(axes, key=lambda run: run["measured_samples_per_s"])
    assert payload["winner"]["label"] == fastest["label"]
    assert payload["plan_pick_won"] == (payload["plan_pick"]["label"] == fastest["label"])
    # the plan's pick (its best runnable candidate) is among the runs: it is its axis's best
    assert payload["plan_pick"]["label"] in {run["label"] for run in axes}
    assert payload["phases"]["plan_s"] > 0 and payload["phases"]["runs_s"] > 0
    assert "parnn study schemes" in payload["schemes"]
    assert Path(payload["plot_path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(Path(payload["results_path"]).read_text())
    assert saved["axes"] == axes and saved["machine"]["torch"]
    # The demo is a study: the plan and every run are cells of its store; a re-run resumes
    # (nothing runs again) and `parnn report` re-renders it.
    records = StudyStore(out).records()
    assert len(records) == 1 + len(axes)
    again = run_demo(DemoSettings(epochs=1, cache_dir=cache), out, quiet=True)
    assert again["axes"] == axes and StudyStore(out).records() == records
    # ... and so does the command (`make run` twice): no refusal, nothing runs again
    rerun = CliRunner().invoke(
        cli,
        ["demo", "--out", str(out), "--epochs", "1", "--cache-dir", str(cache), "--json",
         "--quiet"],
    )  # fmt: skip
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.output.strip().splitlines()[-1])["axes"] == axes
    assert StudyStore(out).records() == records
    (out / "report.md").unlink()
    rendered = CliRunner().invoke(cli, ["report", str(out), "--json"])
    assert rendered.exit_code == 0, rendered.output
    report = (out / "report.md").read_text()
    assert f"winner (measured): {fastest['label']}" in report and "![demo](demo.png)" in report
    assert "The plan: every candidate" in report


def planned(
    label: str, axis: str, threads: int, rank: int, *, runnable: bool = True
) -> dict[str, Any]:
    """A plan's candidate entry as ``PlanResult.to_dict()`` writes it (what the demo reads)."""
    return {
        "axis": axis,
        "config": {"label": label, "threads": threads},
        "predicted_samples_per_s": 1000.0 / rank,
        "rank": rank,
        "runnable": runnable,
        "why": f"why {label}",
    }


PLAN = [
    planned("ddp x2 (2t)", "data", 2, 1),
    planned("1 process x 2t", "threads", 2, 2),
    planned("hogwild x2 (1t)", "data", 1, 3),
    planned("ddp x2 of gpipe 2 ranks (1t)", "hybrid", 1, 4, runnable=False),
    planned("1f1b 2 ranks (2t)", "pipeline", 2, 5),
    planned("pipedream 2 ranks (1t)", "pipeline", 1, 6),
    planned("1 process x 4t", "threads", 4, 7),
    planned("1 process x 1t", "threads", 1, 8),
]


def test_demo_runs_one_thread_all_threads_and_every_axis_s_best() -> None:
    runs = demo_runs(PLAN, cores=4)
    assert runs == [
        {"role": "baseline", "label": "1 process x 1t"},
        {"role": "threads", "label": "1 process x 4t"},
        {"role": "threads", "label": "1 process x 2t"},  # the threads axis's best
        {"role": "data", "label": "ddp x2 (2t)"},
        {"role": "pipeline", "label": "1f1b 2 ranks (2t)"},
        # no hybrid: the only one is not runnable
    ]
    # on 2 cores the best threads candidate is one of the two baselines: no third run
    assert [run["label"] for run in demo_runs(PLAN, cores=2)] == [
        "1 process x 1t", "1 process x 2t", "ddp x2 (2t)", "1f1b 2 ranks (2t)",
    ]  # fmt: skip


def record(role: str, label: str, **measured: Any) -> dict[str, Any]:
    return {"key": {"run": "verify", "role": role, "label": label}, **measured}


SETTINGS = {"model": "lenet5", "data": "digits", "batch_size": 64, "epochs": 2,
            "optimizer": "adam", "lr": 0.003, "lr_schedule": "constant"}  # fmt: skip


def payload_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    plan = {"key": {"run": "plan", "role": "", "label": ""}, "input_shape": [1, 28, 28],
            "cores": 2, "candidates": PLAN, "reason": "ddp wins", "cell_wall_s": 1.5}  # fmt: skip
    return demo_payload(SETTINGS, [plan, *records], Path("out"))


def test_the_winner_is_the_fastest_measured_not_the_fastest_predicted() -> None:
    payload = payload_of(
        [
            record("data", "ddp x2 (2t)", samples_per_s=900.0, val_accuracy=0.9, wall_s=2.0),
            record("baseline", "1 process x 1t", samples_per_s=500.0, val_accuracy=0.91,
                   wall_s=3.0),
            record("pipeline", "1f1b 2 ranks (2t)", samples_per_s=1200.0, val_accuracy=0.9,
                   wall_s=2.5),
            record("threads", "1 process x 2t", error="rank 0 failed: killed"),
        ]
    )  # fmt: skip
    assert [run["role"] for run in payload["axes"]] == ["baseline", "threads", "data", "pipeline"]
    assert payload["winner"]["label"] == "1f1b 2 ranks (2t)"
    assert payload["plan_pick"]["label"] == "ddp x2 (2t)" and payload["plan_pick_won"] is False
    by_label = {run["label"]: run for run in payload["axes"]}
    assert by_label["ddp x2 (2t)"]["measured_speedup"] == pytest.approx(900 / 500)
    assert by_label["ddp x2 (2t)"]["predicted_speedup"] == pytest.approx(1000.0 / 125.0)
    assert by_label["ddp x2 (2t)"]["prediction_error"] == pytest.approx((1000 - 900) / 900)
    failed = by_label["1 process x 2t"]
    assert failed["measured_samples_per_s"] is None and "killed" in failed["error"]
    assert payload["phases"] == {"plan_s": 1.5, "runs_s": 0.0}


def test_demo_table_names_the_winner_and_whether_the_plan_picked_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    payload = payload_of(
        [
            record("baseline", "1 process x 1t", samples_per_s=500.0, val_accuracy=0.91,
                   wall_s=3.0, cell_wall_s=3.1),
            record("data", "ddp x2 (2t)", samples_per_s=900.0, val_accuracy=0.9, wall_s=2.0,
                   cell_wall_s=2.1),
        ]
    )  # fmt: skip
    render_demo({**payload, "plot_path": "r/demo.png", "results_path": "r/demo.json"})
    text = capsys.readouterr().out
    assert "1.80x (8.00x)" in text  # measured (predicted) speedup over one thread
    assert "winner (measured): ddp x2 (2t) (data) at 900 samples/s; the plan picked it too" in text
    assert "plan 1.5 s" in text and "runs 5.2 s" in text
    assert "parnn study schemes" in text and "plot: r/demo.png" in text


def test_the_cli_default_epochs_are_the_demo_study_s() -> None:
    assert cli_demo.EPOCHS == DemoSettings().epochs
