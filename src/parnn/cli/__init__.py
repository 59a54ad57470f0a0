"""The command line: maps flags onto configs, nothing else.

Each command lives in a module of this package that defines ``COMMANDS`` (a list of click
commands or groups); :data:`_COMMAND_MODULES` lists them in the order ``--help`` shows.
A :class:`~parnn.errors.ParnnError` is printed as one line on standard error and ends the
process with its ``exit_code`` (2 for bad input), never with a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from parnn import __version__
from parnn.errors import ParnnError

__all__ = ["cli", "main"]

_COMMAND_MODULES = (
    "demo",
    "models",
    "train",
    "pipeline",
    "partition",
    "dp",
    "plan",
    "kfold",
    "study",
    "report",
)


class _ParnnGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ParnnError as error:
            message = " ".join(str(error).split())
            click.echo(f"parnn: error: {message}", err=True)
            raise click.exceptions.Exit(error.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C: the launchers have stopped their processes
            click.echo("parnn: interrupted", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(cls=_ParnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parnn")
def cli() -> None:
    """Train neural networks in parallel on the cores of a CPU, and measure what it costs."""


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"parnn.cli.{name}")
        except ModuleNotFoundError as error:  # pragma: no cover - a module still being written
            if error.name != f"parnn.cli.{name}":
                raise
            continue
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``parnn`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="parnn")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
