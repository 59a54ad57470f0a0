"""``parnn study``: the classic studies, one subcommand each.

    parnn study batch-scaling --model lenet5 --data mnist --data-dir DIR \\
        --batch-sizes 8,16,...,1024 --target-accuracy 0.97

Add a study by defining a click command and ``study.add_command(...)`` below.

``batch-scaling --json`` prints one object (stable keys): command ("study batch-scaling"),
model, data, train_samples, val_samples, settings (batch_sizes, learning_rates,
target_accuracy, max_epochs, optimizer, momentum, seed, eval_growth, patience), points (rows:
batch_size, best_lr, steps, epochs, samples, trials), regimes (rows: regime, from_batch,
to_batch, slopes), trials (rows: batch_size, lr, steps_to_target, steps_run,
best_accuracy, evaluations, stopped: target, budget, stalled, pruned or diverged,
elapsed_s), files, machine.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import click
import torch
from rich.table import Table

from parnn.cli._options import (
    data_dir_option,
    data_option,
    emit,
    input_shape_option,
    json_option,
    model_option,
    out_option,
    parse_input_shape,
    quiet_option,
    seed_option,
    threads_option,
)
from parnn.data_parallel.plots import plot_batch_scaling
from parnn.data_parallel.scaling import (
    BatchScalingConfig,
    Trial,
    parse_batch_sizes,
    run_batch_scaling,
)
from parnn.errors import ConfigError
from parnn.progress import stderr_console, stdout_console
from parnn.results import machine_facts, write_json
from parnn.train.setup import setup_training

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
    files = {
        "plot": str(
            plot_batch_scaling(
                result, out_dir / "steps_vs_batch.png", title=f"{model} on {setup.data_name}"
            )
        ),  # fmt: skip
        "result": str(out_dir / "batch_scaling.json"),
        "trials": str(out_dir / "trials.jsonl"),
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


COMMANDS = [study]
