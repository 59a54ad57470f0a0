from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from parnn.cli import cli
from parnn.trace import load_chrome_trace, track_names


def test_schedules_lists_what_torch_offers() -> None:
    result = CliRunner().invoke(cli, ["schedules", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)["schedules"]}
    assert {"gpipe", "1f1b", "interleaved-1f1b", "looped-bfs", "zero-bubble"} <= set(rows)
    # One registry: torch class, rules, and what the simulator replays, for every schedule.
    assert rows["interleaved-1f1b"]["aliases"] == ["interleaved"]
    assert rows["zbv"]["stages_per_rank"] == "2" and rows["zbv"]["layout"] == "v"
    assert rows["zbv"]["backward"] == "I + W" and rows["gpipe"]["backward"] == "B"
    assert rows["dualpipev"]["microbatches"] == ">= 2 x ranks"
    assert rows["pipedream"]["torch_class"] == "PipelineStage"
    assert all(row["simulated"] for row in rows.values())


@pytest.mark.timeout(180)
def test_pipeline_json_results_and_trace(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "pipeline",
            "--model",
            "lenet5",
            "--stages",
            "2",
            "--partition",
            "2,3",
            "--schedule",
            "1f1b",
            "--microbatches",
            "4",
            "--batch-size",
            "32",
            "--steps",
            "6",
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert payload["command"] == "pipeline"
    assert payload["partition"] == [0, 2, 5]
    assert payload["steps"] == 6 and payload["samples"] == 192
    assert payload["samples_per_s"] > 0 and payload["step_time_s"] > 0
    assert payload["startup_s"] > 0  # from this (pytest) process's start to the first step
    assert [s["units"] for s in payload["stages"]] == [["conv1", "conv2"], ["fc1", "fc2", "fc3"]]
    for stage in payload["stages"]:
        assert stage["forward_s"] > 0 and stage["backward_s"] > 0 and stage["peak_rss_mib"] > 0
    # LeNet-5 after conv2 at micro-batch 8: (8, 16, 5, 5) float32 = 3,200 bytes... x4 = 12,800
    assert payload["boundaries"] == [
        {
            "after_stage": 0,
            "shape": [8, 16, 5, 5],
            "activation_bytes": 12800,
            "bytes_per_step": 2 * 4 * 12800,
        }
    ]
    assert len(payload["losses"]) == 6
    assert 0.0 <= payload["val_accuracy"] <= 1.0
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["partition"] == [0, 2, 5] and saved["machine"]["torch"]
    trace = load_chrome_trace(tmp_path / "trace.json")
    names = track_names(trace)
    assert len(names) == 2 and all("rank" in name for name in names.values())
    kinds = {e["name"][0] for e in trace["traceEvents"] if e.get("ph") == "X"}
    assert {"F", "B"} <= kinds
