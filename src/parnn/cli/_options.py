"""Flags that mean the same thing in every command, and the one way results are printed.

Use the decorators so that ``--model``, ``--data``, ``--data-dir``, ``--batch-size``,
``--epochs``/``--steps``, ``--lr``, ``--lr-schedule``, ``--seed``, ``--threads``, ``--out``,
``--json`` and ``--quiet`` read and behave alike everywhere (the vocabulary is in
docs/architecture.md). :func:`emit` prints one JSON object with ``--json`` and a human
rendering otherwise.

A flag that was renamed keeps its old spelling for one release: give the command
``cls=RenamedFlagsCommand, renamed_flags={"--old": "--new"}``; the old spelling is hidden
from ``--help``, still works, and prints one ``parnn: warning: --old is now --new`` line.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from parnn.errors import ParnnWarning
from parnn.progress import stdout_console
from parnn.results import to_json

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "RenamedFlagsCommand",
    "batch_size_option",
    "data_dir_option",
    "data_option",
    "emit",
    "epochs_option",
    "input_shape_option",
    "json_option",
    "lr_option",
    "lr_schedule_option",
    "model_option",
    "out_option",
    "parse_input_shape",
    "quiet_option",
    "ranks_option",
    "rename_flags",
    "seed_option",
    "steps_option",
    "threads_option",
]


def model_option(default: str | None = "lenet5") -> Callable[[F], F]:
    return click.option(
        "--model",
        default=default,
        show_default=True,
        help="Model name from `parnn models`, or a user model 'file.py:build' / 'pkg.module:build'.",
    )


def data_option(default: str = "digits") -> Callable[[F], F]:
    return click.option(
        "--data",
        default=default,
        show_default=True,
        help="Dataset: digits (bundled), mnist, cifar10 or synthetic.",
    )


data_dir_option: Callable[[F], F] = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory holding the dataset files (mnist: IDX files; cifar10: python batches).",
)


def batch_size_option(default: int = 64) -> Callable[[F], F]:
    return click.option(
        "--batch-size", type=int, default=default, show_default=True, help="Mini-batch size."
    )


def epochs_option(default: int | None = 3) -> Callable[[F], F]:
    return click.option(
        "--epochs",
        type=int,
        default=default,
        show_default=True,
        help="Passes over the training data.",
    )


def steps_option(default: int | None = None) -> Callable[[F], F]:
    return click.option(
        "--steps",
        type=int,
        default=default,
        show_default=True,
        help="Optimizer steps to run (overrides --epochs when given).",
    )


def lr_option(default: float = 0.05) -> Callable[[F], F]:
    return click.option(
        "--lr", type=float, default=default, show_default=True, help="Learning rate."
    )


def lr_schedule_option(default: str = "constant") -> Callable[[F], F]:
    """``--lr-schedule``: the learning-rate schedule (``--schedule`` is the pipeline's)."""
    from parnn.train.schedules import SCHEDULES  # a tuple of names: no torch import

    return click.option(
        "--lr-schedule",
        type=click.Choice(list(SCHEDULES), case_sensitive=False),
        default=default,
        show_default=True,
        help="LR schedule per optimizer step: constant, step, cosine, warm (linear warm-up, "
        "then cosine).",
    )


seed_option: Callable[[F], F] = click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for weights, data and order."
)

out_option: Callable[[F], F] = click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory for results (JSON/CSV), traces and plots.",
)

json_option: Callable[[F], F] = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of tables."
)

quiet_option: Callable[[F], F] = click.option("--quiet", is_flag=True, help="No progress bars.")

threads_option: Callable[[F], F] = click.option(
    "--threads", type=int, default=1, show_default=True, help="Intra-op threads per process."
)


def ranks_option(default: int | None = 2, *, help: str | None = None) -> Callable[[F], F]:
    """``--ranks``: worker processes (ranks) of an engine."""
    return click.option(
        "--ranks",
        type=int,
        default=default,
        show_default=default is not None,
        help=help or "Worker processes (ranks), one pinned core each.",
    )


input_shape_option: Callable[[F], F] = click.option(
    "--input",
    "input_shape",
    default=None,
    help="Input shape CxHxW (e.g. 3x32x32); default: the model's own.",
)


def rename_flags(args: list[str], renamed: Mapping[str, str]) -> list[str]:
    """``args`` with each old spelling of a renamed flag replaced by its new one (also in
    ``--old=value``), warning once per old flag; nothing after ``--`` is touched."""
    result: list[str] = []
    warned: set[str] = set()
    for index, arg in enumerate(args):
        if arg == "--":
            result.extend(args[index:])
            break
        flag, equals, value = arg.partition("=")
        new = renamed.get(flag)
        if new is None:
            result.append(arg)
            continue
        if flag not in warned:
            warned.add(flag)
            with warnings.catch_warnings():  # every run says it, not only the first
                warnings.simplefilter("always", ParnnWarning)
                warnings.warn(f"{flag} is now {new}", ParnnWarning, stacklevel=2)
        result.append(f"{new}{equals}{value}")
    return result


class RenamedFlagsCommand(click.Command):
    """A command that still takes the old spellings of its renamed flags, with a warning."""

    def __init__(self, *args: Any, renamed_flags: Mapping[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.renamed_flags = dict(renamed_flags or {})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rename_flags(args, self.renamed_flags))


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """'3x32x32' -> (3, 32, 32); None stays None. Bad text is a one-line error."""
    from parnn.errors import ConfigError

    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        raise ConfigError(
            f"bad input shape {text!r}: expected positive integers joined by 'x', e.g. 3x32x32"
        ) from None
    if not shape or any(size <= 0 for size in shape):
        raise ConfigError(
            f"bad input shape {text!r}: every size must be a positive integer, e.g. 1x28x28"
        )
    return shape


def emit(
    payload: Mapping[str, Any],
    *,
    as_json: bool,
    render: Callable[[], None] | None = None,
) -> None:
    """Print ``payload`` as one JSON object (``--json``) or call ``render`` to draw tables."""
    if as_json:
        click.echo(to_json(dict(payload), indent=None))
    elif render is not None:
        render()
    else:
        stdout_console.print(dict(payload))
