"""`parnn plan`: the --json keys on hand-made profiles (known answers), a tiny real
--verify run that fills the measured figures, and bad input as one error line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from plan_profiles import write_cache

from parnn.cli import cli
from parnn.launch import usable_cores

BATCH = 8
CANDIDATE_KEYS = {
    "axis",
    "config",
    "predicted_samples_per_s",
    "measured_samples_per_s",
    "rank",
    "runnable",
    "prediction_error",
    "why",
    "prediction",
}


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return write_cache(tmp_path / "cache", machine_cores=len(usable_cores()), batch_size=BATCH)


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["plan", *args])


def run_json(*args: str) -> dict[str, Any]:
    result = run(*args, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.output)
    return payload


def test_plan_json_keys_and_ranking(cache_dir: Path) -> None:
    payload = run_json(
        "--model", "lenet5", "--batch-size", str(BATCH), "--cores", "2",
        "--cache-dir", str(cache_dir),
    )  # fmt: skip
    assert {"candidates", "best", "best_measured", "machine", "reason", "assumptions"} <= set(
        payload
    )
    candidates = payload["candidates"]
    assert len(candidates) == 10  # 2 threads, 3 data-parallel engines, 5 pipeline schedules
    for row in candidates:
        assert CANDIDATE_KEYS <= set(row)
        assert row["axis"] in ("threads", "data", "pipeline", "hybrid")
        assert row["measured_samples_per_s"] is None
        assert row["predicted_samples_per_s"] > 0
    assert [row["rank"] for row in candidates] == list(range(1, 11))
    predicted = [row["predicted_samples_per_s"] for row in candidates]
    assert predicted == sorted(predicted, reverse=True)
    assert payload["best"] == candidates[0]
    assert payload["best_measured"] is None
    assert payload["machine"]["model_of_machine"]["contention"] == {"2": 1.25}
    assert payload["best"]["config"]["label"] in payload["reason"]


def test_plan_on_paper_for_many_nodes(cache_dir: Path) -> None:
    payload = run_json(
        "--model", "lenet5", "--batch-size", str(BATCH), "--nodes", "8", "--cores", "4",
        "--link-bandwidth", "10", "--link-latency", "50", "--cache-dir", str(cache_dir),
    )  # fmt: skip
    rows = payload["candidates"]
    assert any(row["config"]["nodes"] == 8 for row in rows)
    assert all(row["config"]["cores_per_node"] <= 4 for row in rows)
    assert not any(row["runnable"] for row in rows if row["config"]["nodes"] > 1)
    assert payload["machine"]["link"]["latency_s"] == pytest.approx(50e-6)
    assert any("copies of it" in line for line in payload["assumptions"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_plan_verify_fills_measured_figures(cache_dir: Path) -> None:
    if len(usable_cores()) < 2:
        pytest.skip("verifying two-process candidates needs two usable cores")
    payload = run_json(
        "--model", "lenet5", "--batch-size", str(BATCH), "--cores", "2", "--verify", "1",
        "--steps", "3", "--cache-dir", str(cache_dir),
    )  # fmt: skip
    measured = [row for row in payload["candidates"] if row["measured_samples_per_s"]]
    labels = {row["config"]["label"] for row in measured}
    # the best predicted runnable candidate and both single-process baselines
    assert {"1 process x 1t", "1 process x 2t", payload["best"]["config"]["label"]} <= labels
    assert all(row["measured_samples_per_s"] > 0 for row in measured)
    assert all(row["prediction_error"] is not None for row in measured)
    fastest = max(measured, key=lambda row: row["measured_samples_per_s"])
    assert payload["best_measured"]["config"]["label"] == fastest["config"]["label"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--batch-size", "0"], "batch size 0"),
        (["--nodes", "2", "--verify", "1"], "--verify runs on this machine"),
        (["--model", "my_model.py:build"], "needs an input shape"),
        (["--link-bandwidth", "-1", "--nodes", "2"], "--link-bandwidth"),
        (["--model", "no-such-model"], "no-such-model"),
    ],
)
def test_bad_input_is_one_error_line(args: list[str], words: str, tmp_path: Path) -> None:
    result = run(*args, "--cache-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parnn: error:"), result.output
    assert words in lines[0]


def test_verify_repeats_run_in_rotating_rounds_and_report_the_median(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each verified candidate runs once per round, each round starting one candidate
    later; its figure is the median of its runs, a failed run is reported beside the
    others, and the table shows the runs' range."""
    import parnn.plan.planner as planner

    order: list[str] = []
    figures: dict[str, list[float]] = {}

    def reset() -> None:
        figures.clear()
        figures.update({"1 process x 1t": [90.0, 100.0, 300.0],
                        "1 process x 2t": [200.0, 180.0, 220.0]})  # fmt: skip

    def fake_measure(candidate: Any, prediction: Any, settings: Any) -> float:
        order.append(candidate.label)
        runs = figures.setdefault(candidate.label, [50.0, 60.0, 70.0])
        value = runs.pop(0)
        if candidate.label == "ddp x2 (1t)" and value == 60.0:
            raise planner.ParnnError("rank 1 timed out")
        return value

    monkeypatch.setattr(planner, "measure_candidate", fake_measure)
    reset()
    args = ["--model", "lenet5", "--batch-size", str(BATCH), "--cores", "2",
            "--cache-dir", str(cache_dir), "--verify", "10", "--verify-repeats", "3"]  # fmt: skip
    payload = run_json(*args)
    assert payload["settings"]["verify_repeats"] == 3
    rows = {row["config"]["label"]: row for row in payload["candidates"]}
    assert rows["1 process x 1t"]["measured_runs"] == [90.0, 100.0, 300.0]
    assert rows["1 process x 1t"]["measured_samples_per_s"] == 100.0  # the median
    assert rows["1 process x 2t"]["measured_samples_per_s"] == 200.0
    assert payload["best_measured"]["config"]["label"] == "1 process x 2t"
    assert rows["ddp x2 (1t)"]["measured_runs"] == [50.0, 70.0]  # the second run failed
    assert rows["ddp x2 (1t)"]["measured_samples_per_s"] == 60.0
    assert rows["ddp x2 (1t)"]["verify_error"] == "rank 1 timed out"
    n = len(rows)
    first, second, third = order[:n], order[n : 2 * n], order[2 * n :]
    assert len(third) == n and set(first) == set(rows)
    assert second == first[1:] + first[:1] and third == first[2:] + first[:2]
    reset()
    table = run(*args)
    assert table.exit_code == 0, table.output
    assert "(90-300)" in table.output.replace(",", "")


def test_verify_repeats_must_be_positive(cache_dir: Path) -> None:
    result = run("--verify-repeats", "0", "--cache-dir", str(cache_dir))
    assert result.exit_code == 2 and "--verify-repeats 0" in result.output
