"""`parnn models`: the model zoo as a table (or one JSON object with --json).

Models are built on the ``meta`` device: shapes and parameter counts without allocating
or initialising a single weight, so listing VGG-16 at 224x224 is instant.
"""

from __future__ import annotations

from typing import Any

import click

from parnn.cli._options import emit, input_shape_option, json_option, parse_input_shape
from parnn.progress import stdout_console

__all__ = ["COMMANDS", "models"]


def _describe(
    name: str,
    input_shape: tuple[int, ...] | None,
    num_classes: int | None,
    *,
    with_units: bool,
) -> dict[str, Any]:
    """One model's row: zoo models are built on ``meta``; user models for real, on the CPU
    (their code may not know the meta device), and described at --input when given."""
    import contextlib

    import torch

    from parnn.models import build_model, count_parameters, get_model_spec, unit_names
    from parnn.models.user import is_user_spec

    if is_user_spec(name):
        shape, classes, description = input_shape, num_classes, "user model"
        device: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    else:
        spec = get_model_spec(name)
        shape = spec.default_input_shape if input_shape is None else input_shape
        classes = spec.default_num_classes if num_classes is None else num_classes
        description = spec.description
        device = torch.device("meta")
    with device, torch.no_grad():
        model = build_model(name, input_shape=shape, num_classes=classes).eval()
        entry: dict[str, Any] = {
            "name": name,
            "units": len(model),
            "parameters": count_parameters(model),
            "input_shape": None if shape is None else list(shape),
            "num_classes": classes,
            "description": description,
        }
        if with_units:
            activation = None if shape is None else torch.zeros((1, *shape))
            details = []
            for unit_name, unit in zip(unit_names(model), model, strict=True):
                activation = None if activation is None else unit(activation)
                details.append(
                    {
                        "name": unit_name,
                        "parameters": count_parameters(unit),
                        "output_shape": None if activation is None else list(activation.shape[1:]),
                    }
                )
            entry["unit_details"] = details
    return entry


def _shape_text(shape: list[int] | None) -> str:
    if shape is None:
        return "-"
    return "x".join(str(size) for size in shape)


def _render(entries: list[dict[str, Any]], *, with_units: bool) -> None:
    from rich.table import Table

    table = Table(title="parnn model zoo" if not with_units else None)
    for column, justify in (
        ("name", "left"),
        ("units", "right"),
        ("parameters", "right"),
        ("input", "right"),
        ("classes", "right"),
        ("description", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for entry in entries:
        table.add_row(
            entry["name"],
            str(entry["units"]),
            f"{entry['parameters']:,}",
            _shape_text(entry["input_shape"]),
            str(entry["num_classes"] or "-"),
            entry["description"],
        )
    stdout_console.print(table)
    if with_units:
        for entry in entries:
            units = Table(title=f"{entry['name']}: cuttable units")
            units.add_column("#", justify="right")
            units.add_column("unit")
            units.add_column("parameters", justify="right")
            units.add_column("output", justify="right")
            for index, detail in enumerate(entry["unit_details"]):
                units.add_row(
                    str(index),
                    detail["name"],
                    f"{detail['parameters']:,}",
                    _shape_text(detail["output_shape"]),
                )
            stdout_console.print(units)


@click.command("models")
@click.argument("name", required=False)
@input_shape_option
@click.option(
    "--classes",
    "num_classes",
    type=int,
    default=None,
    help="Number of classes; default: the model's own.",
)
@json_option
def models(
    name: str | None, input_shape: str | None, num_classes: int | None, as_json: bool
) -> None:
    """List the model zoo: units, parameters and default input of every model.

    With NAME (a zoo name or a user model 'file.py:build'), also list that model's cuttable
    units: the parameters and output shape of each, at --input/--classes when given.
    """
    from parnn.models import model_names

    shape = parse_input_shape(input_shape)
    names = [name] if name is not None else list(model_names())
    with_units = name is not None
    entries = [_describe(each, shape, num_classes, with_units=with_units) for each in names]
    emit(
        {"models": entries},
        as_json=as_json,
        render=lambda: _render(entries, with_units=with_units),
    )


COMMANDS = [models]
