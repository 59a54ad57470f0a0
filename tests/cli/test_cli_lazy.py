"""`parnn --help`, `parnn CMD --help` and usage errors import nothing heavy.

Commands load lazily and import torch inside their functions, so a user who only asks for
help never pays for torch (seconds). Each check runs in a fresh interpreter and reads
``sys.modules`` there: a check of what is imported, not a timer.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from parnn.bench.studies.settings import STUDY_INPUT_SHAPE
from parnn.cli import cli

HEAVY = ("torch", "matplotlib", "sklearn", "numpy")

# Runs the parnn CLI once per argument list given as JSON, in this one interpreter, and
# prints after each run the heavy modules imported so far: the first list whose line
# names one is the culprit.
_CHILD = """
import json, sys
from parnn.cli import main
for args in json.loads(sys.argv[1]):
    try:
        main(args)
    except SystemExit:
        pass
    heavy = [name for name in json.loads(sys.argv[2]) if name in sys.modules]
    print("HEAVY", json.dumps([args, heavy]), flush=True)
"""


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    context = click.Context(group)
    paths = []
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, (*prefix, name)))
    return paths


def _heavy_imports(argument_lists: list[list[str]]) -> dict[str, list[str]]:
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(argument_lists), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = {}
    for line in completed.stdout.splitlines():
        if line.startswith("HEAVY "):
            args, heavy = json.loads(line.removeprefix("HEAVY "))
            found[" ".join(args)] = heavy
    assert len(found) == len(argument_lists), completed.stdout + completed.stderr
    return found


@pytest.mark.timeout(150)
def test_help_of_every_command_imports_no_torch() -> None:
    paths = _command_paths(cli)
    assert {"train", "pipeline", "dp", "kfold", "study", "demo"} <= {p[0] for p in paths}
    argument_lists = [["--help"], *[[*path, "--help"] for path in paths]]
    found = _heavy_imports(argument_lists)
    assert {args: heavy for args, heavy in found.items() if heavy} == {}


@pytest.mark.timeout(150)
def test_usage_errors_import_no_torch() -> None:
    argument_lists = [
        ["no-such-command"],
        ["train", "--no-such-flag"],
        ["dp", "--epochs", "many"],
        ["study", "axes", "--ranks"],
        ["pipeline", "--lr-schedule", "no-such-schedule"],
    ]
    found = _heavy_imports(argument_lists)
    assert {args: heavy for args, heavy in found.items() if heavy} == {}


def test_study_help_shows_the_harness_default_input() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "parnn.cli", "study", "schemes", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    default = "x".join(str(size) for size in STUDY_INPUT_SHAPE)
    assert f"default: {default}" in " ".join(result.stdout.split())
