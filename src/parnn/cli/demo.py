"""``parnn demo``: plan one model on this machine and verify every axis, on embedded data.

Maps its flags to :class:`parnn.bench.studies.demo.DemoSettings`, runs the demo study
(:func:`parnn.bench.studies.demo.run_demo`: ``parnn plan`` for LeNet-5 on the bundled
digits at batch 64, then the best layout of every axis, one process with all the cores'
threads and one with one thread, each trained for the same epochs) and renders its result:
one table, the winner and whether the plan picked it, where the time went, and the paths
of the plot, the report and ``demo.json``.

``--json`` prints one object: ``command`` ("demo"), ``model``, ``data``, ``input_shape``,
``batch_size``, ``epochs``, ``optimizer``, ``cores``, ``candidates`` (how many the plan
predicted), ``axes`` (one per run: ``role``, ``axis``, ``label``, ``config``, ``rank``,
``predicted_samples_per_s``, ``measured_samples_per_s``, ``prediction_error``,
``predicted_speedup``, ``measured_speedup``, ``val_accuracy``, ``run_s``, ``why``,
``error``), ``winner`` (the fastest measured), ``plan_pick`` (the plan's first runnable
candidate), ``plan_pick_won``, ``reason``, ``phases`` (``plan_s``, ``runs_s``),
``wall_s``, ``schemes``, ``plot_path``, ``results_path``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table

from parnn.cli._options import emit, json_option, quiet_option, seed_option
from parnn.outdir import Resumes, check_out_dir
from parnn.progress import stdout_console

__all__ = ["COMMANDS", "demo_command", "render_demo"]

EPOCHS = 10  # parnn.bench.studies.demo.EPOCHS, written out so that --help imports no torch


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Directory for results (JSON), the report and the plot.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=EPOCHS,
    show_default=True,
    help="Epochs of every run.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the plan's profiles and machine measurements are cached [default: ~/.cache/parnn].",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Run afresh over an earlier demo in --out (without it, running again resumes it).",
)
@seed_option
@json_option
@quiet_option
def demo_command(
    out: Path,
    epochs: int,
    cache_dir: Path | None,
    overwrite: bool,
    seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Plan LeNet-5 on the bundled digits for this machine, then run every axis's best."""
    from parnn.bench.cells import STUDY_FILE

    # Running again into an earlier demo resumes it (a finished one re-renders at once,
    # as every study does); --overwrite runs it afresh.
    resumes = Resumes.RERUN if (out / STUDY_FILE).exists() else Resumes.NEVER
    check_out_dir(out, resumes=resumes, overwrite=overwrite)
    from parnn.bench.studies.demo import DemoSettings, run_demo

    payload = run_demo(
        DemoSettings(epochs=epochs, seed=seed, cache_dir=cache_dir),
        out,
        quiet=quiet or as_json,
        fresh=overwrite,
    )
    emit(payload, as_json=as_json, render=lambda: render_demo(payload))


def render_demo(payload: Mapping[str, Any]) -> None:
    """The demo's table on standard output (the winner in bold), the verdict, where the
    time went, and where its results and plot are."""
    from parnn.bench.studies.demo_report import axis_rows, epochs, phases, verdict

    table = Table(
        title=(
            f"parnn demo: LeNet-5 on digits, batch {payload['batch_size']}, "
            f"{payload['cores']} cores, {epochs(payload['epochs'])} "
            f"({payload['candidates']} layouts planned)"
        ),
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        show_edge=False,
    )
    # AXIS_COLUMNS but the run's seconds (in the time line below), shortened to fit 80
    # columns: no cell wraps
    for column in ("axis", "layout", "pred/s", "meas/s", "error", "speedup (pred)", "acc"):
        table.add_column(
            column, justify="left" if column in ("axis", "layout") else "right", no_wrap=True
        )
    winner = (payload.get("winner") or {}).get("label")
    for run, row in zip(payload["axes"], axis_rows(payload), strict=True):
        cells = row[:-1]
        table.add_row(*(f"[bold]{cell}[/]" if run["label"] == winner else cell for cell in cells))
    stdout_console.print(table)
    for run in payload["axes"]:
        if run["error"]:
            stdout_console.print(f"{run['label']} failed: {run['error']}", soft_wrap=True)
    stdout_console.print(verdict(payload))
    stdout_console.print(f"why: {payload['reason']}")
    stdout_console.print(phases(payload))
    stdout_console.print(f"not here: {payload['schemes']}", soft_wrap=True)
    stdout_console.print(f"results: {payload['results_path']}", soft_wrap=True)
    stdout_console.print(f"plot: {payload['plot_path']}", soft_wrap=True)


COMMANDS = [demo_command]
