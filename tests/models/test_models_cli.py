"""`parnn models`: the zoo table, --json, one model's units, errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from parnn.cli import cli
from parnn.models import model_names

PUBLISHED = {
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "resnet50": 25_557_032,
    "mobilenetv2": 3_504_872,
    "lenet5": 61_706,
}


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["models", *args])
    return result.exit_code, result.stdout, result.stderr


def test_table_lists_every_model() -> None:
    code, out, _ = _run()
    assert code == 0
    for name in model_names():
        assert name in out
    assert "138,357,544" in out and "3x224x224" in out


def test_json_is_one_object_with_stable_keys() -> None:
    code, out, _ = _run("--json")
    assert code == 0
    payload = json.loads(out)
    assert list(payload) == ["models"]
    entries = {entry["name"]: entry for entry in payload["models"]}
    assert tuple(entries) == model_names()
    for entry in entries.values():
        assert set(entry) == {
            "name",
            "units",
            "parameters",
            "input_shape",
            "num_classes",
            "description",
        }
    for name, count in PUBLISHED.items():
        assert entries[name]["parameters"] == count
    assert entries["vgg16"]["units"] == 16 and entries["resnet50"]["units"] == 18
    assert entries["mobilenetv2"]["input_shape"] == [3, 224, 224]
    assert entries["mobilenetv2"]["num_classes"] == 1000


def test_one_model_lists_its_units_at_a_given_input() -> None:
    code, out, _ = _run("lenet5", "--input", "1x12x12", "--classes", "3", "--json")
    assert code == 0
    (entry,) = json.loads(out)["models"]
    assert entry["input_shape"] == [1, 12, 12] and entry["num_classes"] == 3
    details = entry["unit_details"]
    assert [d["name"] for d in details] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert [d["output_shape"] for d in details] == [[6, 6, 6], [16, 1, 1], [120], [84], [3]]
    assert sum(d["parameters"] for d in details) == entry["parameters"]
    code, out, _ = _run("resnet50")
    assert code == 0 and "layer4_3" in out and "2048x1x1" in out


def test_user_model_by_path(tmp_path: Path) -> None:
    path = tmp_path / "net.py"
    path.write_text(
        "from torch import nn\n\n"
        "def build(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1] ** 2, num_classes))\n"
    )
    code, out, _ = _run(f"{path}:build", "--input", "1x4x4", "--classes", "2", "--json")
    assert code == 0
    (entry,) = json.loads(out)["models"]
    assert entry["units"] == 2 and entry["parameters"] == 34
    assert entry["unit_details"][-1]["output_shape"] == [2]


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    code, out, err = _run("resnet51")
    assert code == 2 and out == ""
    assert err.startswith("parnn: error: unknown model 'resnet51'") and "mobilenetv2" in err
    code, _, err = _run("lenet5", "--input", "1x8x8")
    assert code == 2 and "at least 12" in err and err.count("\n") == 1
    code, _, err = _run("mlp", "--input", "3x")
    assert code == 2 and "bad input shape" in err
    code, _, err = _run(f"{tmp_path / 'absent.py'}:build")
    assert code == 2 and "does not exist" in err
