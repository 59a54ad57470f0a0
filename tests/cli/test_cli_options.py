"""The shared vocabulary of the command line: renamed flags keep their old spelling for one
release, hidden from --help, with one ``parnn: warning:`` line, and still take effect."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from parnn.cli import cli

# (command, old spelling, new spelling, a bad value, a word of the error it must cause)
RENAMED = [
    ("train", "--schedule", "--lr-schedule", "nosuch", "nosuch"),
    ("dp", "--schedule", "--lr-schedule", "nosuch", "nosuch"),
    ("dp", "--processes", "--ranks", "0", "ranks 0"),
    ("pipeline", "--threads-per-stage", "--threads", "0", "threads"),
    ("kfold", "--schedulers", "--lr-schedules", "nosuch", "nosuch"),
    ("kfold", "--threads-per-job", "--threads", "0", "threads"),
    ("study axes", "--processes", "--ranks", "1", "ranks 1"),
]


def invoke(*args: str) -> tuple[int, str, list[str]]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr.splitlines()


def test_an_old_spelling_with_equals_warns_once() -> None:
    code, _, lines = invoke("kfold", "--schedulers=nosuch", "--schedulers", "nosuch", "--quiet")
    assert code == 2
    assert lines[0] == "parnn: warning: --schedulers is now --lr-schedules"
    assert len(lines) == 2 and "nosuch" in lines[1]


@pytest.mark.parametrize(("command", "old", "new", "value", "word"), RENAMED)
def test_an_old_spelling_warns_and_reaches_the_new_option(
    command: str, old: str, new: str, value: str, word: str
) -> None:
    code, _, lines = invoke(*command.split(), old, value, "--quiet")
    assert code == 2
    assert lines[0] == f"parnn: warning: {old} is now {new}"
    assert len(lines) == 2 and lines[1].startswith("parnn: error: ") and word in lines[1]


@pytest.mark.parametrize(("command", "old", "new", "value", "word"), RENAMED)
def test_the_new_spelling_does_not_warn(
    command: str, old: str, new: str, value: str, word: str
) -> None:
    code, _, lines = invoke(*command.split(), new, value, "--quiet")
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("parnn: error: ") and word in lines[0]


@pytest.mark.parametrize(("command", "old", "new"), sorted({r[:3] for r in RENAMED}))
def test_help_shows_the_new_spelling_only(command: str, old: str, new: str) -> None:
    code, out, _ = invoke(*command.split(), "--help")
    assert code == 0
    assert re.search(rf"(^|[\s,]){re.escape(new)}([\s,]|$)", out, re.MULTILINE)
    assert not re.search(rf"(^|[\s,]){re.escape(old)}([\s,=]|$)", out, re.MULTILINE)


@pytest.mark.timeout(120)
def test_an_old_spelling_still_takes_effect() -> None:
    code, out, lines = invoke(
        "train", "--model", "mlp", "--steps", "2", "--schedule", "warm", "--json", "--quiet"
    )
    assert code == 0
    assert lines == ["parnn: warning: --schedule is now --lr-schedule"]
    assert json.loads(out)["lr_schedule"] == "warm"
