"""Ctrl-C in any command: one line on stderr and exit code 130, not a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import parnn.pipeline
from parnn.cli import cli


def _interrupted(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.timeout(60)
def test_ctrl_c_exits_130_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parnn.pipeline, "run_pipeline", _interrupted)
    result = CliRunner().invoke(
        cli, ["pipeline", "--model", "lenet5", "--data", "digits", "--stages", "2", "--quiet"]
    )
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == "parnn: interrupted"
    assert "Traceback" not in result.output
