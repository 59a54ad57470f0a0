"""``parnn demo``: the headline job on embedded data, in about a minute on 2 cores.

Maps its flags to :class:`parnn.bench.studies.demo.DemoSettings`, runs the demo study
(:func:`parnn.bench.studies.demo.run_demo`: every named layer-distribution scheme and the
cost-aware ``auto`` partition as a 2-stage pipeline of LeNet-5 on the bundled digits, side
by side with the single-process reference trainer) and renders its result: one table and
the paths of the plot, the report and ``demo.json``.

``--json`` prints one object: ``command`` ("demo"), ``model``, ``data``, ``stages``,
``batch_size``, ``microbatches``, ``epochs``, ``reference`` (samples_per_s,
val_accuracy), ``runs`` (one per scheme: scheme, partition, units_per_stage,
samples_per_s, step_time_s, bubble_fraction, val_accuracy, speedup_vs_reference,
stage_compute_s), ``best_scheme``, ``wall_s``, ``plot_path``, ``results_path``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from parnn.cli._options import emit, json_option, quiet_option, seed_option
from parnn.outdir import check_out_dir
from parnn.progress import stdout_console

__all__ = ["COMMANDS", "demo_command", "render_demo"]

EPOCHS = 8  # parnn.bench.studies.demo.EPOCHS, written out so that --help imports no torch


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Directory for results (JSON), traces and the plot.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=EPOCHS,
    show_default=True,
    help="Epochs per run.",
)
@click.option("--overwrite", is_flag=True, help="Write over an earlier demo in --out.")
@seed_option
@json_option
@quiet_option
def demo_command(
    out: Path, epochs: int, overwrite: bool, seed: int, as_json: bool, quiet: bool
) -> None:
    """LeNet-5 on the bundled digits as a 2-stage pipeline: every scheme and `auto`."""
    check_out_dir(out, overwrite=overwrite)
    from parnn.bench.studies.demo import DemoSettings, run_demo

    payload = run_demo(
        DemoSettings(epochs=epochs, seed=seed), out, quiet=quiet or as_json, fresh=overwrite
    )
    emit(payload, as_json=as_json, render=lambda: render_demo(payload))


def render_demo(payload: Mapping[str, Any]) -> None:
    """The demo's table on standard output: the reference, then every scheme (the fastest
    in bold), then where its results and plot are."""
    table = Table(
        title=(
            f"parnn demo: LeNet-5 on digits, {payload.get('stages', 2)}-stage pipeline, "
            f"{payload['epochs']} epochs"
        )
    )
    for column in ("scheme", "units", "samples/s", "speedup", "step ms", "bubble", "val acc"):
        table.add_column(column, justify="left" if column == "scheme" else "right")
    reference = payload["reference"]
    table.add_row(
        "1 process",
        "5",
        f"{reference['samples_per_s']:,.0f}",
        "1.00x",
        "",
        "",
        f"{100 * reference['val_accuracy']:.1f}%" if reference["val_accuracy"] else "-",
    )
    for run in payload["runs"]:
        best = run["scheme"] == payload["best_scheme"]
        table.add_row(
            f"[bold]{run['scheme']}[/]" if best else run["scheme"],
            "|".join(map(str, run["units_per_stage"])),
            f"{run['samples_per_s']:,.0f}",
            f"{run['speedup_vs_reference']:.2f}x",
            f"{1000 * run['step_time_s']:.1f}",
            f"{100 * run['bubble_fraction']:.0f}%",
            f"{100 * run['val_accuracy']:.1f}%" if run["val_accuracy"] is not None else "-",
        )
    stdout_console.print(table)
    stdout_console.print(f"fastest: {payload['best_scheme']}; results: {payload['results_path']}")
    stdout_console.print(f"plot: {payload['plot_path']}", soft_wrap=True)


COMMANDS = [demo_command]
