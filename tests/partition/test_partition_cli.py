"""`parnn profile`, `parnn partition` and `parnn simulate`, priced from a cache of hand-made
profiles (so the answers are known), plus one real tiny profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from partition_profiles import make_profile

from parnn.cli import cli
from parnn.partition.comm import CommModel
from parnn.partition.measure.cache import comm_file_name, profile_file_name
from parnn.results import write_json
from parnn.trace import load_chrome_trace
from parnn.transport import local_transport

LENET5 = (1, 28, 28)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """Profiles of 'lenet5' (5 units) for micro-batch sizes 1..8: each call costs 1 ms of
    overhead plus 1 ms per sample, unit 3 is three times heavier; comm is 1 ms + 1 GB/s."""
    directory = tmp_path / "cache"
    for size in (1, 2, 4, 8):
        per_call = (1.0 + size) * 1e-3
        weights = [1, 1, 1, 3, 1]
        profile = make_profile(
            [w * per_call / 3 for w in weights],
            [2 * w * per_call / 3 for w in weights],
            activation_bytes=[1000 * size] * 5,
            saved_bytes=[100 * size] * 5,
            num_parameters=[10, 20, 30, 40, 50],
            batch_size=size,
            model="lenet5",
        )
        payload = profile.to_dict() | {"input_shape": list(LENET5)}
        write_json(
            directory / profile_file_name("lenet5", LENET5, batch_size=size, threads=1), payload
        )
    comm = CommModel(latency_s=1e-3, bandwidth_bytes_per_s=1e9)
    # Under the name the planner reads: the transport the pipeline uses by default here.
    name = comm_file_name(backend="gloo", threads=1, transport=local_transport("auto"))
    write_json(directory / name, comm.to_dict())
    return directory


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    return result


def run_json(*args: str) -> dict[str, Any]:
    result = run(*args, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_partition_auto_json(cache_dir: Path) -> None:
    payload = run_json(
        "partition",
        "--model",
        "lenet5",
        "--batch-size",
        "8",
        "--stages",
        "2",
        "--method",
        "auto",
        "--microbatches",
        "2",
        "--cache-dir",
        str(cache_dir),
    )
    for key in (
        "command",
        "model",
        "input_shape",
        "batch_size",
        "num_stages",
        "num_ranks",
        "schedule",
        "method",
        "partition",
        "boundaries",
        "counts",
        "num_microbatches",
        "microbatch_size",
        "bottleneck_s",
        "bottleneck_compute_s",
        "bottleneck_stage",
        "efficiency",
        "efficiency_without_comm",
        "max_memory_bytes",
        "link_latency_s",
        "stages",
        "predicted",
        "microbatch_candidates",
        "comm",
    ):
        assert key in payload, key
    assert payload["boundaries"] == [0, 3, 5]  # 3 light units | heavy + light
    assert payload["microbatch_size"] == 4
    stage = payload["stages"][1]
    assert stage["recv_forward_s"] == pytest.approx(1e-3 + 4000 / 1e9)
    assert stage["total_s"] == pytest.approx(stage["compute_s"] + stage["comm_s"])
    assert payload["comm"]["latency_s"] == pytest.approx(1e-3)
    assert set(payload["predicted"]) == {
        "step_time_s",
        "bubble_fraction",
        "closed_form_bubble",
        "samples_per_s",
    }


def test_partition_microbatches_auto_and_all_methods(cache_dir: Path) -> None:
    auto = run_json(
        "partition",
        "--model",
        "lenet5",
        "--batch-size",
        "8",
        "--stages",
        "2",
        "--microbatches",
        "auto",
        "--cache-dir",
        str(cache_dir),
        "--comm",
        "none",
    )
    steps = {c["num_microbatches"]: c["step_time_s"] for c in auto["microbatch_candidates"]}
    assert sorted(steps) == [1, 2, 4, 8]
    assert auto["num_microbatches"] == min(steps, key=steps.__getitem__)
    assert auto["comm"] is None
    table = run_json(
        "partition",
        "--model",
        "lenet5",
        "--batch-size",
        "8",
        "--stages",
        "2",
        "--method",
        "all",
        "--microbatches",
        "4",
        "--cache-dir",
        str(cache_dir),
    )
    rows = {row["method"]: row for row in table["methods"]}
    assert "auto" in rows and "end-heavy" in rows and "params" in rows
    best = min(row["bottleneck_s"] for row in rows.values())
    assert rows["auto"]["bottleneck_s"] == pytest.approx(best)
    assert table["best_method"] in rows


def test_partition_table_and_no_profile(cache_dir: Path) -> None:
    result = run(
        "partition",
        "--model",
        "lenet5",
        "--batch-size",
        "8",
        "--stages",
        "2",
        "--method",
        "time",
        "--cache-dir",
        str(cache_dir),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "efficiency" in result.output and "bottleneck" in result.output
    bare = run_json(
        "partition", "--model", "lenet5", "--stages", "3", "--method", "end-heavy", "--no-profile"
    )
    assert bare["costed"] is False and bare["counts"] == [1, 1, 3]
    assert [s["unit_names"] for s in bare["stages"]][0] == ["conv1"]


def test_partition_errors_are_one_line(cache_dir: Path) -> None:
    result = run(
        "partition",
        "--model",
        "lenet5",
        "--method",
        "fastest",
        "--cache-dir",
        str(cache_dir),
        "--batch-size",
        "8",
        "--quiet",
    )
    assert result.exit_code == 2
    assert "parnn: error: unknown partition 'fastest'" in result.output
    result = run("partition", "--model", "lenet5", "--method", "auto", "--no-profile")
    assert result.exit_code == 2 and "needs a profile" in result.output
    result = run(
        "partition",
        "--model",
        "lenet5",
        "--batch-size",
        "8",
        "--cache-dir",
        str(cache_dir),
        "--max-stage-memory",
        "10B",
        "--quiet",
    )
    assert result.exit_code == 2 and "smallest cap that fits" in result.output


def test_simulate_writes_chart_trace_and_json(cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim"
    payload = run_json(
        "simulate",
        "--model",
        "lenet5",
        "--batch-size",
        "8",
        "--stages",
        "2",
        "--partition",
        "auto",
        "--schedule",
        "1f1b",
        "--microbatches",
        "4",
        "--cache-dir",
        str(cache_dir),
        "--out",
        str(out),
    )
    assert payload["command"] == "simulate"
    assert payload["step_time_s"] == pytest.approx(payload["simulation"]["step_time_s"])
    ranks = payload["simulation"]["ranks"]
    assert [(r["rank"], r["peak_in_flight"]) for r in ranks] == [(0, 2), (1, 1)]
    assert payload["grid"].startswith("rank0: F0 F1 B0")
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    trace = load_chrome_trace(out / "trace.json")
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {e["tid"] for e in spans} == {0, 1}
    assert len([e for e in spans if e["cat"] in ("forward", "backward")]) == 16
    saved = json.loads((out / "simulation.json").read_text())
    assert saved["events"] and saved["step_time_s"] == payload["step_time_s"]
    assert {e["rank"] for e in saved["events"]} == {0, 1}
    interleaved = run_json(
        "simulate",
        "--model",
        "lenet5",
        "--batch-size",
        "8",
        "--stages",
        "2",
        "--schedule",
        "interleaved",
        "--chunks",
        "2",
        "--microbatches",
        "4",
        "--cache-dir",
        str(cache_dir),
    )
    assert interleaved["num_stages"] == 4 and interleaved["num_ranks"] == 2


@pytest.mark.parametrize(
    ("schedule", "grid"),
    [
        ("looped-bfs", "rank0: F0.0 F1.0 F0.1 F1.1 B1.1 B0.1 B1.0 B0.0"),
        ("zero-bubble", "rank0: F0.0 F1.0 F0.1 F1.1 I0.1 W0.1 I1.1 W1.1 I0.0 W0.0 I1.0 W1.0"),
        ("zbv", "rank0: F0.0 F1.0 F0.1 I0.1 W0.1 F1.1 I1.1 W1.1 I0.0 W0.0 I1.0 W1.0"),
    ],
)
def test_simulate_runs_every_multi_stage_schedule(
    cache_dir: Path, tmp_path: Path, schedule: str, grid: str
) -> None:
    # lenet5 has 5 units: 2 ranks x 2 stages; the default --chunks is the registry's 2.
    out = tmp_path / schedule
    args = ["--model", "lenet5", "--batch-size", "8", "--stages", "2", "--schedule", schedule]
    args += ["--microbatches", "2", "--cache-dir", str(cache_dir), "--out", str(out)]
    payload = run_json("simulate", *args)
    assert payload["num_stages"] == 4 and payload["schedule"] == schedule
    assert payload["grid"].splitlines()[0] == grid
    split = schedule != "looped-bfs"
    assert (payload["closed_form_bubble"] is None) == split
    trace = load_chrome_trace(out / "trace.json")
    kinds = {e["cat"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert ("backward-weight" in kinds) == split
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    shown = run("simulate", *args[:-2], "--quiet")  # the table, closed form or not
    assert shown.exit_code == 0 and "simulated" in shown.output
    refused = run("simulate", *args[:-2], "--chunks", "3", "--quiet")
    if schedule == "zbv":
        assert refused.exit_code == 2 and "needs exactly --stages-per-rank 2" in refused.output


def test_profile_measures_a_tiny_model(tmp_path: Path) -> None:
    payload = run_json(
        "profile",
        "--model",
        "lenet5",
        "--batch-size",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--comm",
        "none",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
    )
    assert payload["command"] == "profile"
    assert [u["name"] for u in payload["units"]] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert payload["totals"]["num_parameters"] == 61706
    assert Path(payload["cache_file"]).exists()
    assert json.loads(Path(payload["file"]).read_text())["units"] == payload["units"]
