"""Hybrid parallelism: d replicas of a p-stage pipeline on a (dp, pp) mesh.

Transparency: k hybrid steps give the reference trainer's parameters on the same global
batch (d=2 replicas of a 2-stage pipeline, gpipe and 1f1b: 4 ranks, oversubscribing a
small machine on purpose). Each replica's loss is the mean over its shard and the
gradients are averaged across the replicas, so only the order of floating-point sums
differs: rtol 1e-4, atol 1e-5, as for the plain pipeline.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from pipeline_reference import reference_state

import parnn
from parnn.cli import cli
from parnn.errors import ConfigError, RankFailedError
from parnn.pipeline import PipelineConfig, run_pipeline
from parnn.train import OptimizerConfig
from parnn.train.setup import setup_training

STEPS = 3
BATCH = 32


def _config(**settings: object) -> PipelineConfig:
    values: dict[str, object] = {
        "model": "lenet5",
        "data": "digits",
        "num_ranks": 2,
        "replicas": 2,
        "schedule": "gpipe",
        "num_microbatches": 2,
        "batch_size": BATCH,
        "steps": STEPS,
        "optimizer": OptimizerConfig(name="adam", lr=0.003),
        "evaluate": False,
        "return_parameters": True,
    }
    values.update(settings)
    return PipelineConfig.of(**values)


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("ignore:oversubscribed")  # 4 ranks on 2 cores is allowed
@pytest.mark.parametrize(
    ("schedule", "transport", "stages_per_rank"),
    [("gpipe", "shm", 1), ("1f1b", "auto", 1), ("interleaved-1f1b", "shm", 2)],
)
def test_hybrid_steps_equal_the_reference_trainer(
    schedule: str, transport: str, stages_per_rank: int
) -> None:
    config = _config(schedule=schedule, transport=transport, stages_per_rank=stages_per_rank)
    result = run_pipeline(config, quiet=True)
    assert result is not None and result.parameters is not None
    assert result.replicas == 2 and result.world_size == 4
    # the stages' messages ran over shared memory along "pp", within each replica only
    assert result.transport["used"] == "shm"
    assert sorted(result.transport["pairs"]) == ["0-1", "2-3"]
    expected = reference_state("lenet5", None, BATCH, STEPS)
    assert sorted(result.parameters) == sorted(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(result.parameters[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    initial = setup_training("lenet5", "digits", seed=0).model.state_dict()
    assert any(not torch.equal(initial[k], expected[k]) for k in expected)
    # measured per stage and per replica: compute, wait and the gradient all-reduce
    ranks_of_stages = [
        (replica, stage, 2 * replica + stage % 2)
        for replica in range(2)
        for stage in range(2 * stages_per_rank)
    ]
    assert [(s.replica, s.stage, s.rank) for s in result.stages] == ranks_of_stages
    assert all(s.compute_s > 0 and s.allreduce_s > 0 for s in result.stages)
    assert len(result.losses) == STEPS


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("ignore:oversubscribed")
def test_hybrid_over_gloo_writes_one_trace_track_per_rank(tmp_path: Path) -> None:
    config = _config(transport="gloo", out_dir=tmp_path, return_parameters=False, steps=4)
    config.measure_warmup_steps = 1
    result = run_pipeline(config, quiet=True)
    assert result is not None and result.transport["used"] == "gloo"
    trace = json.loads((tmp_path / "trace.json").read_text())
    names = sorted(
        e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"
    )
    assert names == [
        "rank 0: replica 0, stage 0",
        "rank 1: replica 0, stage 1",
        "rank 2: replica 1, stage 0",
        "rank 3: replica 1, stage 1",
    ]
    spans = {e["name"] for e in trace["traceEvents"] if e.get("ph") == "X"}
    assert "allreduce" in spans and "F0" in spans and "B1" in spans
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["replicas"] == 2 and stored["config"]["replicas"] == 2


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore:oversubscribed")
def test_a_failing_rank_of_another_replica_is_named_and_everything_stops() -> None:
    with pytest.raises(RankFailedError) as failure:
        run_pipeline(_config(fail_rank=3, fail_at_step=1, return_parameters=False), quiet=True)
    assert failure.value.rank == 3
    assert "injected failure at step 1" in str(failure.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"batch_size": 30}, r"not divisible by 2 replicas x 2 micro-batches = 4"),
        ({"schedule": "pipedream"}, r"asynchronous schedules have no flush"),
        ({"replicas": 0}, r"replicas must be an integer >= 1"),
        ({"fail_rank": 4, "fail_at_step": 0}, r"not a rank of 4"),
    ],
)
def test_bad_hybrid_settings_fail_in_one_line(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(**settings)


def test_the_cli_refuses_a_world_size_that_is_not_replicas_x_stages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "RANK": "0",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29999",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(
        cli, ["pipeline", "--replicas", "2", "--stages", "2", "--steps", "2", "--no-eval"]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "parnn: error: --replicas 2 x --stages 2 = 4 ranks, but the launcher started "
        "WORLD_SIZE=2; make them equal (torchrun --nnodes N --nproc-per-node K starts N*K)"
    )


def test_the_cli_refuses_an_uneven_global_batch_in_one_line() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "pipeline",
            "--replicas",
            "2",
            "--microbatches",
            "4",
            "--batch-size",
            "20",
            "--steps",
            "1",
        ],
    )
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.startswith("parnn: error:")]
    assert "not divisible by 2 replicas x 4 micro-batches = 8" in line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_torchrun_agents_as_two_nodes_run_a_hybrid_and_rank_0_prints_once(
    tmp_path: Path,
) -> None:
    """Two torchrun agents on localhost stand for two machines (--nnodes 2
    --nproc-per-node 2): global ranks 0-1 on node 0 are replica 0's stages, 2-3 on node 1
    replica 1's, so the pipeline's messages stay within a node and only the gradient
    all-reduce crosses between them."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(parnn.__file__).parents[1])}
    agents = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=2",
                f"--node-rank={node}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "-m",
                "parnn.cli",
                "pipeline",
                "--replicas=2",
                "--stages=2",
                "--schedule=1f1b",
                "--steps=3",
                "--no-eval",
                "--quiet",
                f"--out={tmp_path / 'run'}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        for node in (0, 1)
    ]
    outputs = []
    try:
        for agent in agents:
            stdout, stderr = agent.communicate(timeout=280)
            outputs.append((agent.returncode, stdout, stderr))
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    for code, _stdout, stderr in outputs:
        assert code == 0, stderr[-3000:]
    title = "lenet5 on digits: 2 replicas x 2 ranks, 1f1b"
    assert outputs[0][1].count(title) == 1  # rank 0 (node 0) prints the table once
    assert title not in outputs[1][1] and "step time" not in outputs[1][1]
    stored = json.loads((tmp_path / "run" / "result.json").read_text())
    assert stored["replicas"] == 2 and stored["world_size"] == 4 and stored["steps"] == 3
    assert sorted(stored["transport"]["pairs"]) == ["0-1", "2-3"]
