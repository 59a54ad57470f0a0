"""``parnn plan``: how to spend the cores (threads, data, pipeline, hybrid) for a model and
a batch, predicted from measured profiles and costs; ``--verify K`` runs the best K and
the baselines and prints the measured figures beside the predicted ones.

    parnn plan --model alexnet --input 3x32x32 --batch-size 64 --verify 3
    parnn plan --model vgg16 --input 3x32x32 --batch-size 128 --nodes 8 --cores 32 \
        --link-bandwidth 10 --link-latency 50

``--json`` prints one object: command ("plan"), model, input_shape, batch_size, cores,
nodes, candidates (each: axis, config, predicted_samples_per_s, measured_samples_per_s or
null, rank, runnable, prediction_error, why, prediction), best, best_measured (null unless
verified), reason, assumptions, skipped, machine, settings. See docs/plan.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from parnn.cli._options import (
    batch_size_option,
    data_dir_option,
    data_option,
    emit,
    input_shape_option,
    json_option,
    model_option,
    parse_input_shape,
    quiet_option,
    seed_option,
)

__all__ = ["COMMANDS", "plan"]


def _measured_cell(median: float | None, runs: list[float]) -> str:
    """The median of a candidate's verification runs, and their range when there were
    several."""
    if median is None:
        return "-"
    if len(runs) < 2:
        return f"{median:,.0f}"
    return f"{median:,.0f} ({min(runs):,.0f}-{max(runs):,.0f})"


def _render(payload: dict[str, Any]) -> None:
    from rich.table import Table

    from parnn.progress import stdout_console

    nodes = f"{payload['nodes']} nodes x " if payload["nodes"] > 1 else ""
    title = (
        f"parnn plan: {payload['model']} {'x'.join(map(str, payload['input_shape']))}, batch "
        f"{payload['batch_size']}, {nodes}{payload['cores']} cores"
    )
    table = Table(title=title)
    for column in ("rank", "axis", "layout", "predicted/s", "measured/s", "error"):
        table.add_column(column, justify="left" if column in ("axis", "layout") else "right")
    for row in payload["candidates"]:
        measured = row["measured_samples_per_s"]
        error = row["prediction_error"]
        table.add_row(
            str(row["rank"]),
            row["axis"],
            row["config"]["label"],
            f"{row['predicted_samples_per_s']:,.0f}",
            _measured_cell(measured, row["measured_runs"]),
            "-" if error is None else f"{100 * error:+.0f}%",
        )
    stdout_console.print(table)
    for row in payload["candidates"]:
        stdout_console.print(f"{row['rank']:>3}. {row['config']['label']}: {row['why']}")
    stdout_console.print(f"[bold]winner[/bold]: {payload['reason']}")
    best_measured = payload["best_measured"]
    if best_measured is not None:
        stdout_console.print(
            f"[bold]fastest measured[/bold]: {best_measured['config']['label']} at "
            f"{best_measured['measured_samples_per_s']:,.0f} samples/s"
        )
    for label_and_reason in payload["skipped"]:
        stdout_console.print(f"skipped {label_and_reason['label']}: {label_and_reason['reason']}")
    stdout_console.print("assumptions: " + "; ".join(payload["assumptions"]))


@click.command("plan")
@model_option(default="lenet5")
@input_shape_option
@batch_size_option(64)
@click.option("--cores", type=int, default=None, help="Cores per node [default: this machine's].")
@click.option("--nodes", type=int, default=1, show_default=True, help="Machines (>1: on paper).")
@click.option(
    "--link-bandwidth",
    type=float,
    default=10.0,
    show_default=True,
    help="Network bandwidth between nodes, Gbit/s.",
)
@click.option(
    "--link-latency",
    type=float,
    default=50.0,
    show_default=True,
    help="Network latency between nodes, microseconds.",
)
@click.option(
    "--verify",
    type=int,
    default=0,
    show_default=True,
    help="Run the best K candidates and the 1-thread / all-threads baselines for real.",
)
@click.option(
    "--steps", type=int, default=6, show_default=True, help="Steps of each verification run."
)
@click.option(
    "--verify-seconds",
    type=float,
    default=1.0,
    show_default=True,
    help="Measure each verification run at least this long (more steps for fast "
    "candidates, as predicted); 0: exactly --steps.",
)
@click.option(
    "--verify-repeats",
    type=int,
    default=1,
    show_default=True,
    help="Runs of each verified candidate, in rotating rounds; its figure is their median.",
)
@data_option("synthetic")
@data_dir_option
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where profiles and machine measurements are cached [default: ~/.cache/parnn].",
)
@seed_option
@json_option
@quiet_option
def plan(
    model: str,
    input_shape: str | None,
    batch_size: int,
    cores: int | None,
    nodes: int,
    link_bandwidth: float,
    link_latency: float,
    verify: int,
    steps: int,
    verify_seconds: float,
    verify_repeats: int,
    data: str,
    data_dir: Path | None,
    cache_dir: Path | None,
    seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Predict the fastest way to spend the cores on a model, and verify it."""
    from parnn.partition.measure.cache import default_cache_dir
    from parnn.plan import PlanConfig, make_plan

    config = PlanConfig(
        model=model,
        input_shape=parse_input_shape(input_shape),
        batch_size=batch_size,
        cores=cores,
        nodes=nodes,
        link_bandwidth_gbps=link_bandwidth,
        link_latency_us=link_latency,
        verify=verify,
        data=data,
        data_dir=data_dir,
        steps=steps,
        warmup_steps=min(2, steps - 1),
        verify_seconds=verify_seconds,
        verify_repeats=verify_repeats,
        cache_dir=cache_dir if cache_dir is not None else default_cache_dir(),
        seed=seed,
    )
    result = make_plan(config, quiet=quiet or as_json)
    payload = result.to_dict()
    emit(payload, as_json=as_json, render=lambda: _render(payload))


COMMANDS = [plan]
