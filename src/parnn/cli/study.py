"""``parnn study``: the classic studies, one subcommand each.

    parnn study batch-scaling --model lenet5 --data mnist --data-dir DIR \\
        --batch-sizes 8,16,...,1024 --target-accuracy 0.97
    parnn study axes --model lenet5 --ranks 2 --engines serial,ddp,hogwild,pipeline

Add a study by defining a click command and ``study.add_command(...)`` below.

``batch-scaling --json`` prints one object (stable keys): command ("study batch-scaling"),
model, data, train_samples, val_samples, settings (batch_sizes, learning_rates,
target_accuracy, max_epochs, optimizer, momentum, seed, eval_growth, patience), points (rows:
batch_size, best_lr, steps, epochs, samples, trials), regimes (rows: regime, from_batch,
to_batch, slopes), trials (rows: batch_size, lr, steps_to_target, steps_run,
best_accuracy, evaluations, stopped: target, budget, stalled, pruned or diverged,
elapsed_s), files (plot, result, trials, report, page), machine.

``axes --json`` prints one object (stable keys): command ("study axes"), model, data,
train_samples, val_samples, parameters, settings (the AxesConfig: model, data, data_dir,
input_shape, variants, num_ranks, batch_size, epochs, steps, optimizer, lr_schedule,
seed, val_fraction, schedule, num_microbatches, partition), rows (one per variant: variant,
label, axis, ranks, threads, samples_per_s (median step after warm-up),
speedup_vs_serial, efficiency, mean_samples_per_s (null for the pipeline), accuracy,
accuracy_delta_points, peak_rss_mib, peak_rss_mib_per_rank, total_rss_mib, steps,
samples, wall_s, bubble_fraction (pipeline only)), conclusion (sentences), files (result,
plot, report, page), machine. The result file adds runs: each engine's full result by variant.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.table import Table

from parnn.bench.studies.axes import (
    DEFAULT_VARIANTS,
    VARIANTS,
    AxesConfig,
    parse_variants,
)
from parnn.cli._options import (
    RenamedFlagsCommand,
    batch_size_option,
    data_dir_option,
    data_option,
    emit,
    epochs_option,
    input_shape_option,
    json_option,
    lr_option,
    model_option,
    out_option,
    parse_input_shape,
    quiet_option,
    seed_option,
    steps_option,
    threads_option,
)
from parnn.cli.study_pipedream import pipedream as pipedream_study
from parnn.cli.study_pipeline import STUDY_COMMANDS
from parnn.errors import ConfigError
from parnn.outdir import Resumes, check_out_dir
from parnn.progress import stderr_console, stdout_console
from parnn.results import machine_facts, write_json
from parnn.train import SCHEDULES as LR_SCHEDULES
from parnn.train import OptimizerConfig

if TYPE_CHECKING:  # torch and the engines are imported when a study runs, not at --help
    from parnn.bench.studies.axes import VariantRun
    from parnn.bench.studies.batch_scaling import Trial

__all__ = ["COMMANDS", "study"]


@click.group("study")
def study() -> None:
    """Re-run the classic studies of parallel training, each with one command."""


def _parse_rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"bad learning rates {text!r}: give numbers like 0.01,0.03,0.1") from None
    if not rates:
        raise ConfigError(f"bad learning rates {text!r}: give numbers like 0.01,0.03,0.1")
    return rates


def _render_scaling(payload: dict[str, Any]) -> None:
    table = Table(
        title=f"steps to {100 * payload['settings']['target_accuracy']:g}% validation accuracy: "
        f"{payload['model']} on {payload['data']}"
    )
    for column in ("batch", "best lr", "steps", "epochs", "steps x batch", "trials"):
        table.add_column(column, justify="right")
    for point in payload["points"]:
        reached = point["steps"] is not None
        table.add_row(
            str(point["batch_size"]),
            f"{point['best_lr']:g}" if reached else "-",
            f"{point['steps']:,}" if reached else "not reached",
            f"{point['epochs']:.2f}" if reached else "-",
            f"{point['samples']:,}" if reached else "-",
            str(point["trials"]),
        )
    stdout_console.print(table)
    regimes = Table(title="regimes (local slope of log steps vs log batch)")
    for column in ("regime", "batch sizes", "slopes"):
        regimes.add_column(column)
    for span in payload["regimes"]:
        regimes.add_row(
            span["regime"],
            f"{span['from_batch']}-{span['to_batch']}",
            ", ".join(f"{slope:+.2f}" for slope in span["slopes"]),
        )
    stdout_console.print(regimes)
    for name, path in payload["files"].items():
        stdout_console.print(f"{name}: {path}")


@study.command("batch-scaling")
@model_option("lenet5")
@data_option("mnist")
@data_dir_option
@input_shape_option
@click.option(
    "--batch-sizes",
    default="8,16,...,1024",
    show_default=True,
    help="Batch sizes: a list, or a doubling run like 8,16,...,1024.",
)
@click.option(
    "--target-accuracy",
    type=float,
    default=0.97,
    show_default=True,
    help="Validation accuracy each trial must reach.",
)
@click.option(
    "--lrs",
    default="0.003,0.01,0.03,0.1,0.3",
    show_default=True,
    help="Learning-rate grid, tuned per batch size (hill climb).",
)
@click.option(
    "--max-epochs",
    type=float,
    default=20.0,
    show_default=True,
    help="Budget of one trial, in epochs.",
)
@click.option(
    "--patience",
    type=int,
    default=10,
    show_default=True,
    help="Give a trial up after this many evaluations without a better accuracy.",
)
@click.option("--optimizer", default="sgd", show_default=True, help="sgd (momentum) or adam.")
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum.")
@click.option(
    "--num-samples",
    type=int,
    default=None,
    help="Use only the first N samples of the dataset (before the split).",
)
@click.option(
    "--val-fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Share of the data held out for validation.",
)
@seed_option
@threads_option
@out_option
@json_option
@quiet_option
def batch_scaling(
    model: str, data: str, data_dir: Path | None, input_shape: str | None, batch_sizes: str,
    target_accuracy: float, lrs: str, max_epochs: float, patience: int, optimizer: str,
    momentum: float,
    num_samples: int | None, val_fraction: float, seed: int, threads: int, out: Path | None,
    as_json: bool, quiet: bool,
) -> None:  # fmt: skip
    """Steps to a target accuracy against batch size: the three regimes of data parallelism."""
    import torch

    from parnn.bench.report import render_study
    from parnn.bench.studies.batch_scaling import (
        BatchScalingConfig,
        parse_batch_sizes,
        run_batch_scaling,
    )
    from parnn.bench.studies.batch_scaling_report import PLOT_FILE, build_batch_scaling_report
    from parnn.train.setup import setup_training

    config = BatchScalingConfig(
        batch_sizes=parse_batch_sizes(batch_sizes),
        learning_rates=_parse_rates(lrs),
        target_accuracy=target_accuracy,
        max_epochs=max_epochs,
        patience=patience,
        optimizer=optimizer,
        momentum=momentum,
        seed=seed,
    )
    if threads < 1:
        raise ConfigError(f"threads {threads} must be >= 1, e.g. --threads 1")
    torch.set_num_threads(threads)
    setup = setup_training(
        model, data, data_dir=data_dir, input_shape=parse_input_shape(input_shape), seed=seed,
        val_fraction=val_fraction, num_samples=num_samples,
    )  # fmt: skip
    initial = copy.deepcopy(setup.model)
    out_dir = out or Path("parnn-out") / time.strftime("batch-scaling-%Y%m%d-%H%M%S")
    check_out_dir(out_dir, resumes=Resumes.RERUN)  # re-running resumes the study
    out_dir.mkdir(parents=True, exist_ok=True)

    def announce(trial: Trial) -> None:
        if not quiet and not as_json:
            outcome = f"{trial.steps_to_target:,} steps" if trial.reached else trial.stopped
            stderr_console.print(
                f"batch {trial.batch_size:>5}  lr {trial.lr:<7g} {outcome:>14}  "
                f"best acc {100 * trial.best_accuracy:.2f}%  ({trial.elapsed_s:.1f} s)"
            )

    result = run_batch_scaling(
        lambda: copy.deepcopy(initial), setup.train_data, setup.val_data, config,
        out_dir=out_dir, settings={"model": model, "data": setup.data_name,
                                   "train_samples": len(setup.train_data)},
        on_trial=announce,
    )  # fmt: skip
    markdown, html = render_study(out_dir, build_batch_scaling_report)  # draws the plot
    files = {
        "plot": str(out_dir / PLOT_FILE),
        "result": str(out_dir / "batch_scaling.json"),
        "trials": str(out_dir / "cells.jsonl"),
        "report": str(markdown),
        "page": str(html),
    }
    payload: dict[str, Any] = {
        "command": "study batch-scaling",
        "model": model,
        "data": setup.data_name,
        "train_samples": len(setup.train_data),
        "val_samples": len(setup.val_data),
        **result.to_dict(),
        "files": files,
        "machine": machine_facts(),
    }
    write_json(out_dir / "batch_scaling.json", payload)
    emit(payload, as_json=as_json, render=lambda: _render_scaling(payload))


def _render_axes(payload: dict[str, Any]) -> None:
    settings = payload["settings"]
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        title=f"axes of parallelism: {payload['model']} on {payload['data']} "
        f"({payload['train_samples']:,} train / {payload['val_samples']:,} val), "
        f"batch {settings['batch_size']}, same seed and data for every row",
    )
    for column in ("variant", "axis", "R x T", "samples/s", "speedup", "val acc", "+-pts",
                   "RSS MiB"):  # fmt: skip
        table.add_column(
            column, justify="left" if column in ("variant", "axis") else "right", no_wrap=True
        )
    from parnn.bench.studies.axes_report import axes_table_row

    for row in payload["rows"]:
        table.add_row(*axes_table_row(row))
    stdout_console.print(table)
    stdout_console.print(
        f"pipeline: {settings['schedule']} schedule, {settings['num_microbatches']} "
        f"micro-batches, partition {settings['partition']}. samples/s: mini-batch over the "
        "median step time after the warm-up steps; speedup: over serial with 1 thread; "
        "R x T: ranks x threads; +-pts: accuracy points vs serial; RSS MiB: peak "
        "ru_maxrss of each worker process."
    )
    stdout_console.print("[bold]conclusion[/]")
    for line in payload["conclusion"]:
        stdout_console.print(f"- {line}")
    for name, path in payload["files"].items():
        stdout_console.print(f"{name}: {path}")


@study.command("axes", cls=RenamedFlagsCommand, renamed_flags={"--processes": "--ranks"})
@model_option("lenet5")
@data_option("digits")
@data_dir_option
@input_shape_option
@click.option(
    "--engines",
    default=",".join(DEFAULT_VARIANTS),
    show_default=True,
    help=f"Variants to compare, from {', '.join(VARIANTS)}; serial is always run.",
)
@click.option(
    "--ranks",
    type=int,
    default=2,
    show_default=True,
    help="Cores of every parallel variant: its ranks, or serial-threads' threads.",
)
@batch_size_option(64)
@epochs_option(5)
@steps_option(None)
@lr_option(0.05)
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option(
    "--momentum",
    type=float,
    default=0.5,
    show_default=True,
    help="SGD momentum (0.5: Hogwild's stale updates act as extra momentum; 0.9 stalls it).",
)
@click.option(
    "--lr-schedule",
    type=click.Choice(list(LR_SCHEDULES)),
    default="constant",
    show_default=True,
    help="LR schedule of every variant, stepped per optimizer step.",
)
@click.option(
    "--schedule", default="gpipe", show_default=True, help="Pipeline schedule (parnn schedules)."
)
@click.option(
    "--microbatches", type=int, default=4, show_default=True, help="Pipeline micro-batches."
)
@click.option(
    "--partition",
    default="equal-load",
    show_default=True,
    help="Pipeline partition: boundaries 0,3,5 / unit counts 3,2 / a scheme / a method.",
)
@seed_option
@out_option
@click.option(
    "--overwrite",
    is_flag=True,
    help="Run afresh over an earlier study in --out (without it, running again resumes it).",
)
@json_option
@quiet_option
def axes(
    model: str, data: str, data_dir: Path | None, input_shape: str | None, engines: str,
    ranks: int, batch_size: int, epochs: int, steps: int | None, lr: float,
    optimizer: str, momentum: float, lr_schedule: str, schedule: str, microbatches: int,
    partition: str, seed: int, out: Path | None, overwrite: bool, as_json: bool, quiet: bool,
) -> None:  # fmt: skip
    """Serial, data-parallel and pipeline-parallel training of one model on the same cores:
    samples/s, accuracy and peak memory per process, and the conclusion they support."""
    from parnn.bench.cells import STUDY_FILE, StudyStore
    from parnn.bench.report import render_study
    from parnn.bench.studies.axes import run_axes
    from parnn.bench.studies.axes_report import PLOT_FILE, build_axes_report, conclude

    config = AxesConfig(
        model=model, data=data, data_dir=data_dir, input_shape=parse_input_shape(input_shape),
        variants=parse_variants(engines), num_ranks=ranks, batch_size=batch_size,
        epochs=epochs, steps=steps,
        optimizer=OptimizerConfig(name=optimizer, lr=lr, momentum=momentum),
        lr_schedule=lr_schedule, seed=seed, schedule=schedule, num_microbatches=microbatches,
        partition=partition,
    )  # fmt: skip
    out_dir = out or Path("parnn-out") / time.strftime("axes-%Y%m%d-%H%M%S")
    # Running again into an earlier axes study resumes it; --overwrite runs it afresh.
    resumes = Resumes.RERUN if (out_dir / STUDY_FILE).exists() else Resumes.NEVER
    check_out_dir(out_dir, resumes=resumes, overwrite=overwrite)

    def announce(run: VariantRun) -> None:
        if not quiet and not as_json:
            accuracy = f"{100 * run.accuracy:.2f}%" if run.accuracy is not None else "-"
            stderr_console.print(
                f"{run.label}: {run.samples_per_s:,.0f} samples/s, val acc {accuracy}, "
                f"peak RSS {max(run.peak_rss_mib_per_rank):.0f} MiB"
            )

    if overwrite:
        StudyStore(out_dir).clear()
    result = run_axes(config, quiet=quiet or as_json, on_run=announce, out=out_dir)
    markdown, html = render_study(out_dir, build_axes_report)  # draws the plot
    files = {
        "result": str(out_dir / "axes.json"),
        "plot": str(out_dir / PLOT_FILE),
        "report": str(markdown),
        "page": str(html),
    }
    summary = result.to_dict()
    payload: dict[str, Any] = {
        "command": "study axes",
        **{key: summary[key] for key in ("model", "data", "train_samples", "val_samples",
                                          "parameters", "settings", "rows")},
        "conclusion": conclude(result),
        "files": files,
        "machine": summary["machine"],
    }  # fmt: skip
    write_json(out_dir / "axes.json", {**payload, "runs": result.to_dict(details=True)["runs"]})
    emit(payload, as_json=as_json, render=lambda: _render_axes(payload))


for _command in STUDY_COMMANDS:  # schemes, microbatches, scaling (the pipeline studies)
    study.add_command(_command)
study.add_command(pipedream_study)  # PipeDream vs the synchronous schedules

COMMANDS = [study]
