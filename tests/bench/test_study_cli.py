"""`parnn study schemes | microbatches | scaling` on a fake pipeline: JSON keys, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from _study_fakes import FakePipeline, FakePredictor
from click.testing import CliRunner

from parnn.cli import _ParnnGroup, study_pipeline
from parnn.cli.report import report

COMMON_KEYS = {
    "command",
    "study",
    "out",
    "settings",
    "cells",
    "measured",
    "resumed",
    "failed",
    "report",
    "results",
}


@click.group(cls=_ParnnGroup)
def study() -> None:
    """The study group as the lead attaches it."""


for _command in study_pipeline.STUDY_COMMANDS:
    study.add_command(_command)


@pytest.fixture
def fake_engines(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    pipeline = FakePipeline()
    monkeypatch.setattr(
        study_pipeline, "_engines", lambda out, cache_dir: (pipeline, FakePredictor())
    )
    return pipeline


def _run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(study, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _json(args: list[str]) -> dict[str, Any]:
    code, out, err = _run([*args, "--json", "--quiet"])
    assert code == 0, err
    payload: dict[str, Any] = json.loads(out)
    return payload


def test_schemes_prints_one_json_object_and_resumes(
    tmp_path: Path, fake_engines: FakePipeline
) -> None:
    args = [
        "schemes",
        "--models",
        "lenet5",
        "--batch-sizes",
        "1,2",
        "--schemes",
        "equal-load,auto",
        "--stages",
        "2",
        "--microbatches",
        "2",
        "--input",
        "1x28x28",
        "--repeats",
        "2",
        "--out",
        str(tmp_path),
    ]
    payload = _json(args)
    assert COMMON_KEYS | {"best"} == set(payload)
    assert (payload["study"], payload["cells"], payload["measured"]) == ("schemes", 4, 4)
    assert payload["command"] == "study schemes"
    assert payload["settings"]["input_shape"] == [1, 28, 28]
    row = payload["results"][0]
    assert {"model", "batch_size", "scheme", "status", "step_time_s", "step_time_std_s"} <= set(row)
    assert {"kept", "runs", "samples_per_s", "boundaries", "predicted_step_time_s"} <= set(row)
    assert payload["best"][0]["scheme"] == "auto"  # lenet5's [1, 4] beats equal-load's [3, 2]
    assert Path(payload["report"]["html"]).exists()

    again = _json(args)
    assert (again["measured"], again["resumed"]) == (0, 4)
    assert len(fake_engines.calls) == 4

    code, _, err = _run([*args[:-2], "--repeats", "3", "--out", str(tmp_path)])
    assert code == 2
    assert err.strip().startswith("parnn: error:") and "repeats 2 -> 3" in err
    assert len(err.strip().splitlines()) == 1


def test_microbatches_json_names_the_optimum(tmp_path: Path, fake_engines: FakePipeline) -> None:
    payload = _json(
        [
            "microbatches",
            "--model",
            "dummy16",
            "--input",
            "1x8x8",
            "--stages",
            "4",
            "--microbatches",
            "1,4,16",
            "--batch-size",
            "64",
            "--partition",
            "equal-load",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert COMMON_KEYS | {"optimum"} == set(payload)
    assert payload["optimum"] == [
        {
            "stages": 4,
            "microbatches": 16,
            "step_time_s": pytest.approx(payload["results"][2]["step_time_s"]),
            "predicted_microbatches": 16,
        }
    ]
    assert {call.num_microbatches for call in fake_engines.calls} == {1, 4, 16}


def test_scaling_json_and_table(tmp_path: Path, fake_engines: FakePipeline) -> None:
    args = [
        "scaling",
        "--model",
        "dummy16",
        "--input",
        "1x8x8",
        "--stages",
        "1,2",
        "--batch-size",
        "8",
        "--microbatches",
        "2",
        "--partition",
        "equal-load",
        "--repeats",
        "1",
        "--out",
        str(tmp_path),
    ]
    payload = _json(args)
    assert COMMON_KEYS | {"scaling"} == set(payload)
    assert [p["stages"] for p in payload["scaling"]] == [1, 2]
    assert payload["scaling"][0]["speedup"] == pytest.approx(1.0)
    assert {"efficiency", "ideal", "predicted_speedup"} <= set(payload["scaling"][1])
    code, out, _ = _run([*args, "--quiet"])
    assert code == 0
    assert "scaling" in out and "2 cells: 0 measured now, 2 resumed, 0 failed" in out
    assert "report:" in out
    # `parnn report DIR` re-renders from the results alone.
    (tmp_path / "report.md").unlink()
    rendered = CliRunner().invoke(report, [str(tmp_path), "--json"])
    assert rendered.exit_code == 0 and (tmp_path / "report.md").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["schemes", "--batch-sizes", "1,x"], "--batch-sizes '1,x': expected whole numbers"),
        (["schemes", "--models", "lenet5,nope"], "unknown model 'nope'"),
        (["schemes", "--schemes", "auto,zigzag"], "unknown scheme 'zigzag'"),
        (["schemes", "--input", "3xbig"], "bad input shape '3xbig'"),
        (["microbatches", "--microbatches", "3", "--batch-size", "32"], "does not split into 3"),
        (["microbatches", "--stages", ""], "--stages is empty"),
        (["scaling", "--stages", "4"], "at least two numbers of stages"),
        (["scaling", "--schedule", "zigzag"], "unknown schedule 'zigzag'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, fake_engines: FakePipeline, args: list[str], message: str
) -> None:
    code, out, err = _run([*args, "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parnn: error:")
    assert message in lines[0]
    assert fake_engines.calls == []


class _Captured(Exception):
    """Raised by a patched study runner, carrying the settings the command built."""


@pytest.mark.parametrize(
    ("command", "module", "runner", "settings_class"),
    [
        ("schemes", "schemes", "run_schemes_study", "SchemesSettings"),
        ("microbatches", "microbatches", "run_microbatches_study", "MicrobatchesSettings"),
        ("scaling", "scaling", "run_scaling_study", "ScalingSettings"),
    ],
)
def test_the_flags_defaults_are_the_settings_defaults(
    monkeypatch: pytest.MonkeyPatch,
    fake_engines: FakePipeline,
    command: str,
    module: str,
    runner: str,
    settings_class: str,
) -> None:
    import importlib

    studies = importlib.import_module(f"parnn.bench.studies.{module}")

    def capture(settings: object, *args: object, **kwargs: object) -> None:
        raise _Captured(settings)

    monkeypatch.setattr(studies, runner, capture)
    result = CliRunner().invoke(study, [command, "--quiet"])
    assert isinstance(result.exception, _Captured)
    built = result.exception.args[0]
    assert built.to_dict() == getattr(studies, settings_class)().to_dict()
