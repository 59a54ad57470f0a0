"""The command line: maps flags onto configs, nothing else.

Each command lives in a module of this package that defines ``COMMANDS`` (a list of click
commands or groups); :data:`_COMMAND_MODULES` lists those modules. Commands load lazily:
``parnn CMD`` imports only CMD's module, and the modules import torch inside their
functions, so ``--help`` and usage errors never import torch.
A :class:`~parnn.errors.ParnnError` is printed as one line on standard error and ends the
process with its ``exit_code`` (2 for bad input), never with a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from parnn import __version__
from parnn.errors import ParnnError

__all__ = ["ParnnGroup", "cli", "main"]

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

# Commands whose module is not named after them; any other command is looked up in the
# module of its own name first, then in every module.
_COMMAND_HOMES = {
    "schedules": "pipeline",
    "profile": "partition",
    "simulate": "partition",
}


def _load_commands(module_name: str) -> dict[str, click.Command]:
    """The commands of ``parnn.cli.<module_name>`` by name; {} for a module not written yet."""
    try:
        module = importlib.import_module(f"parnn.cli.{module_name}")
    except ModuleNotFoundError as error:  # pragma: no cover - a module still being written
        if error.name != f"parnn.cli.{module_name}":
            raise
        return {}
    return {command.name: command for command in module.COMMANDS if command.name is not None}


class ParnnGroup(click.Group):
    """A click group that talks like ``parnn``: one ``parnn: error:`` line (exit 2) for bad
    input, one ``parnn: warning:`` line per warning, SIGTERM stopping like Ctrl-C. Groups
    of commands built elsewhere (tests, plug-ins) use it to behave as the real one."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from parnn.cli._console import one_line_warnings, sigterm_as_interrupt

        with one_line_warnings(), sigterm_as_interrupt():
            return super().main(*args, **kwargs)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as error:  # a bad flag of `parnn` itself
            raise _usage_exit(error) from None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import only the module that holds ``cmd_name`` (all of them when it is unknown)."""
        if self is cli and cmd_name not in self.commands:
            home = _COMMAND_HOMES.get(cmd_name, cmd_name)
            if home in _COMMAND_MODULES:
                self.commands.update(_load_commands(home))
            if cmd_name not in self.commands:
                _register()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        if self is cli:
            _register()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> object:
        from parnn.cli._console import Terminated

        try:
            return super().invoke(ctx)
        except ParnnError as error:
            message = " ".join(str(error).split())
            click.echo(f"parnn: error: {message}", err=True)
            raise click.exceptions.Exit(error.exit_code) from None
        except click.UsageError as error:  # a bad flag, value or command of a command
            raise _usage_exit(error) from None
        except KeyboardInterrupt as interrupt:  # the launchers have stopped their processes
            terminated = isinstance(interrupt, Terminated)
            click.echo(f"parnn: {'terminated' if terminated else 'interrupted'}", err=True)
            raise click.exceptions.Exit(143 if terminated else 130) from None


def _usage_exit(error: click.UsageError) -> click.exceptions.Exit:
    """click's usage error as one ``parnn: error:`` line (exit 2), not its usage block."""
    from parnn.cli._console import usage_error_line

    click.echo(usage_error_line(error), err=True)
    return click.exceptions.Exit(2)


@click.group(cls=ParnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parnn")
def cli() -> None:
    """Train neural networks in parallel on the cores of a CPU, and measure what it costs."""


def _register() -> None:
    """Load every command (``parnn --help`` lists them all; the modules are light)."""
    for name in _COMMAND_MODULES:
        cli.commands.update(_load_commands(name))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``parnn`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="parnn")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
