"""`parnn report RESULTS_DIR`: render a study's Markdown report and HTML page from its
results alone (no re-run); the study is read from the directory's stored settings."""

from __future__ import annotations

from pathlib import Path

import click

from parnn.bench.render import render_report
from parnn.cli._options import emit, json_option
from parnn.progress import stdout_console

__all__ = ["COMMANDS"]


@click.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@json_option
def report(results_dir: Path, as_json: bool) -> None:
    """Render report.md and report.html for the study in RESULTS_DIR."""
    markdown_path, html_path = render_report(results_dir)

    def render() -> None:
        stdout_console.print(f"report: {markdown_path}")
        stdout_console.print(f"page:   {html_path}")

    emit(
        {"markdown": str(markdown_path), "html": str(html_path)},
        as_json=as_json,
        render=render,
    )


COMMANDS = [report]
