"""``parnn train`` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from parnn.cli import cli
from parnn.results import read_json, read_jsonl

TRAIN_KEYS = {
    "command",
    "model",
    "data",
    "input_shape",
    "num_classes",
    "parameters",
    "train_samples",
    "val_samples",
    "optimizer",
    "lr",
    "momentum",
    "batch_size",
    "lr_schedule",
    "seed",
    "threads",
    "epochs",
    "steps",
    "samples",
    "val_accuracy",
    "val_loss",
    "per_class_accuracy",
    "train_loss",
    "elapsed_s",
    "train_s",
    "samples_per_s",
    "resumed_from",
    "out_dir",
    "result_path",
    "metrics_path",
}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_train_json_has_the_documented_keys(tmp_path: Path) -> None:
    code, out, _ = run(
        "train", "--steps", "12", "--batch-size", "16", "--json", "--out", str(tmp_path)
    )  # the progress bar goes to stderr: stdout stays one JSON object
    assert code == 0
    payload = json.loads(out)  # one object, nothing else on stdout
    assert set(payload) == TRAIN_KEYS
    assert payload["command"] == "train"
    assert (payload["model"], payload["data"], payload["input_shape"]) == (
        "lenet5",
        "digits",
        [1, 28, 28],
    )
    assert payload["steps"] == 12 and payload["samples"] == 12 * 16
    assert payload["train_samples"] + payload["val_samples"] == 1797
    assert 0 <= payload["val_accuracy"] <= 1 and len(payload["per_class_accuracy"]) == 10
    assert payload["samples_per_s"] > 0
    saved = read_json(payload["result_path"])
    assert saved["steps"] == 12 and "machine" in saved and "config" in saved
    kinds = [record["kind"] for record in read_jsonl(payload["metrics_path"])]
    assert kinds.count("step") == 12 and kinds[0] == "start"


def test_train_prints_a_table_with_accuracy_and_speed() -> None:
    code, out, _ = run("train", "--steps", "5", "--input", "1x16x16", "--optimizer", "sgd")
    assert code == 0
    assert "validation accuracy" in out and "samples/s" in out and "1x16x16" in out
    assert "sgd lr 0.05" in out


def test_train_checkpoint_and_resume_through_the_cli(tmp_path: Path) -> None:
    common = ("train", "--steps", "10", "--batch-size", "32", "--json", "--quiet")
    code, out, _ = run(*common, "--out", str(tmp_path / "a"), "--checkpoint-every", "4")
    assert code == 0
    whole = json.loads(out)
    (tmp_path / "a" / "checkpoints" / "step-00000010.pt").unlink()  # as if it died after 8
    code, out, _ = run(*common, "--out", str(tmp_path / "a"), "--checkpoint-every", "4", "--resume")
    assert code == 0
    resumed = json.loads(out)
    assert resumed["resumed_from"] == 8
    assert resumed["val_loss"] == whole["val_loss"]
    assert resumed["per_class_accuracy"] == whole["per_class_accuracy"]


def test_same_seed_same_result_through_the_cli() -> None:
    args = ("train", "--steps", "6", "--json", "--quiet", "--seed", "3")
    first, second = json.loads(run(*args)[1]), json.loads(run(*args)[1])
    assert first["val_loss"] == second["val_loss"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--batch-size", "0"), "batch size 0 must be > 0"),
        (("--batch-size", "-5"), "batch size -5 must be > 0"),
        (("--model", "lenet7"), "mlp, lenet5, alexnet"),
        (("--data", "imagenet"), "digits, mnist, cifar10, synthetic"),
        (("--data", "mnist", "--data-dir", "/no/such/dir"), "/no/such/dir"),
        (("--data", "mnist"), "--data-dir"),
        (("--optimizer", "rmsprop"), "sgd, adam"),
        (("--lr-schedule", "linear"), "linear"),
        (("--input", "3x"), "3x"),
        (("--epochs", "0"), "epochs 0"),
        (("--checkpoint-every", "5"), "--out"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    code, out, err = run("train", "--quiet", *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parnn: error: ")
    assert message in lines[0]


def test_resume_without_a_checkpoint_exits_2(tmp_path: Path) -> None:
    code, _, err = run("train", "--quiet", "--resume", "--out", str(tmp_path))
    assert code == 2 and "no checkpoint" in err
