"""`parnn dp` end to end (one run, a comparison) and the seed-style Python API
(DistributedTrainer / DistributedTester), with real processes.

The factories handed to the trainer are top-level here: spawned processes import them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from parnn.cli import cli
from parnn.data import load_dataset, train_val_split
from parnn.data_parallel.api import DistributedTester, DistributedTrainer
from parnn.errors import ConfigError
from parnn.models import build_model
from parnn.train import evaluate

RUN_KEYS = {
    "command", "mode", "input_shape", "parameters", "files", "engine", "label", "model",
    "data", "transport", "transport_note", "num_train", "num_val", "config", "steps", "updates",
    "samples", "train_s", "wall_s", "startup_s", "samples_per_s", "final_train_loss", "val",
    "ranks", "cpu", "curve", "machine",
}  # fmt: skip
SPEEDUP_KEYS = {
    "label", "engine", "transport", "ranks", "threads", "samples_per_s", "train_s",
    "speedup_vs_1_thread", "speedup_vs_all_cores", "share_of_independent", "accuracy",
    "accuracy_delta_points",
    "final_train_loss", "cpu_total_percent", "cpu_process_percent", "peak_rss_mib",
}  # fmt: skip


def _run(args: list[str]) -> dict[str, object]:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    payload: dict[str, object] = json.loads(result.stdout)
    return payload


@pytest.mark.timeout(120)
def test_cli_dp_run_json(tmp_path: Path) -> None:
    payload = _run(
        ["dp", "--engine", "ddp", "--model", "mlp", "--data", "digits", "--input", "1x8x8",
         "--num-samples", "400", "--ranks", "2", "--batch-size", "32", "--epochs", "1",
         "--out", str(tmp_path), "--json"]
    )  # fmt: skip
    assert set(payload) == RUN_KEYS
    assert payload["engine"] == "ddp" and payload["steps"] == 10 and payload["samples"] == 320
    assert len(payload["ranks"]) == 2  # type: ignore[arg-type]
    assert payload["startup_s"] > 0  # type: ignore[operator]
    assert 0.0 <= payload["val"]["accuracy"] <= 1.0  # type: ignore[index]
    for name in ("result", "loss_vs_time", "cpu", "model"):
        assert Path(payload["files"][name]).exists()  # type: ignore[index]


@pytest.mark.timeout(180)
def test_cli_dp_compare(tmp_path: Path) -> None:
    payload = _run(
        ["dp", "--compare", "ddp,hogwild,independent", "--model", "mlp", "--data", "digits", "--input",
         "1x8x8", "--num-samples", "400", "--batch-size", "32", "--steps", "6",
         "--out", str(tmp_path), "--json"]
    )  # fmt: skip
    assert payload["mode"] == "compare"
    rows = payload["speedup"]
    labels = ["serial 1t", "serial 2t", "ddp x2", "hogwild x2", "independent x2"]
    assert [row["label"] for row in rows] == labels  # type: ignore[index, union-attr]
    assert all(set(row) == SPEEDUP_KEYS for row in rows)  # type: ignore[union-attr]
    assert rows[0]["speedup_vs_1_thread"] == 1.0  # type: ignore[index]
    # the ceiling: local SGD that averages once, at the end, measured beside the engines
    independent = payload["runs"][4]  # type: ignore[index]
    assert independent["engine"] == "local-sgd" and independent["steps"] == 6
    assert rows[4]["share_of_independent"] == 1.0  # type: ignore[index]
    assert all(row["share_of_independent"] > 0 for row in rows)  # type: ignore[union-attr]
    # ddp reproduces serial exactly in math, so the same validation accuracy
    assert rows[2]["accuracy"] == pytest.approx(rows[0]["accuracy"], abs=0.01)  # type: ignore[index]
    for name in ("loss_vs_time", "loss_vs_samples", "cpu", "throughput", "result"):
        assert Path(payload["files"][name]).stat().st_size > 0  # type: ignore[index]


def make_sgd(params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.5)


def make_step_lr(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.5)


@pytest.mark.timeout(120)
def test_distributed_trainer_and_tester(tmp_path: Path) -> None:
    data = load_dataset("digits", num_samples=600)
    train_data, val_data = train_val_split(data, val_fraction=0.25, seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes)
    trainer = DistributedTrainer(
        num_processes=2, criterion=torch.nn.CrossEntropyLoss(), root_dir=tmp_path, batch_size=30
    )
    result = trainer(model, train_data, make_sgd, make_step_lr, epochs=3)
    assert result.steps == 3 * 15 and (tmp_path / "result.json").exists()
    local = evaluate(model, val_data)
    assert local.accuracy > 0.7  # trained in place (an untrained model: ~0.1)
    tested = DistributedTester(val_data, tmp_path, num_processes=2)(model)
    assert tested.num_samples == local.num_samples
    assert tested.accuracy == pytest.approx(local.accuracy)
    assert tested.loss == pytest.approx(local.loss, rel=1e-5)
    assert tested.per_class_accuracy == pytest.approx(local.per_class_accuracy)
    assert (tmp_path / "eval.json").exists()


def test_trainer_rejects_lambda_factories() -> None:
    data = load_dataset("digits", num_samples=100)
    model = build_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes)
    trainer = DistributedTrainer(num_processes=2, batch_size=10)
    with pytest.raises(ConfigError, match="optimizer_factory cannot be sent"):
        trainer(model, data, lambda params: torch.optim.SGD(params, lr=0.1))
