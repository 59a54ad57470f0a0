"""``parnn train``: one model, one process, the reference trainer.

``--json`` prints one object with these keys (stable): command, model, data, input_shape,
num_classes, parameters, train_samples, val_samples, optimizer, lr, momentum, batch_size,
lr_schedule, seed, threads, epochs, steps, samples, val_accuracy, val_loss,
per_class_accuracy, train_loss, elapsed_s, train_s, samples_per_s, resumed_from, out_dir,
result_path, metrics_path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from parnn.cli._options import (
    RenamedFlagsCommand,
    batch_size_option,
    data_dir_option,
    data_option,
    emit,
    epochs_option,
    input_shape_option,
    json_option,
    lr_schedule_option,
    model_option,
    out_option,
    parse_input_shape,
    quiet_option,
    seed_option,
    steps_option,
    threads_option,
)
from parnn.errors import ConfigError
from parnn.outdir import Resumes, check_out_dir
from parnn.progress import stdout_console

if TYPE_CHECKING:
    from parnn.train import TrainResult
    from parnn.train.setup import TrainingSetup

__all__ = [
    "COMMANDS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "DEFAULT_OPTIMIZER",
    "DEFAULT_SCHEDULE",
    "render_result",
    "result_payload",
    "train_command",
]

# The recipe that takes LeNet-5 on digits past 95% validation accuracy within 5 epochs at
# every seed we tried (14 seeds: 95.3-97.2%; SGD lr 0.05 batch 64 stays at 93-96%).
DEFAULT_OPTIMIZER = "adam"
DEFAULT_LR = {"sgd": 0.05, "adam": 0.003}
DEFAULT_BATCH_SIZE = 32
DEFAULT_SCHEDULE = "cosine"
DEFAULT_EPOCHS = 5


def result_payload(setup: TrainingSetup, result: TrainResult) -> dict[str, Any]:
    """The stable ``--json`` object of a reference run."""
    from parnn.train.trainer import METRICS_FILE, RESULT_FILE

    config = result.config
    final = result.final
    last = result.history[-1] if result.history else None
    steps_per_epoch = config.steps_per_epoch(len(setup.train_data))
    out_dir = result.out_dir
    return {
        "command": "train",
        **setup.describe(),
        "optimizer": config.optimizer.name,
        "lr": config.optimizer.lr,
        "momentum": config.optimizer.momentum if config.optimizer.name == "sgd" else None,
        "batch_size": config.batch_size,
        "lr_schedule": config.lr_schedule,
        "seed": config.seed,
        "threads": config.threads,
        "epochs": round(result.steps / steps_per_epoch, 4),
        "steps": result.steps,
        "samples": result.samples,
        "val_accuracy": final.accuracy if final else None,
        "val_loss": final.loss if final else None,
        "per_class_accuracy": list(final.per_class_accuracy) if final else None,
        "train_loss": last.train_loss if last else None,
        "elapsed_s": round(result.elapsed_s, 4),
        "train_s": round(result.train_s, 4),
        "samples_per_s": round(result.samples_per_s, 2),
        "resumed_from": result.resumed_from,
        "out_dir": str(out_dir) if out_dir is not None else None,
        "result_path": str(out_dir / RESULT_FILE) if out_dir is not None else None,
        "metrics_path": str(out_dir / METRICS_FILE) if out_dir is not None else None,
    }


def render_result(payload: dict[str, Any], *, title: str = "parnn train") -> None:
    """The human rendering of :func:`result_payload` (a rich table on stdout)."""
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")

    def percent(value: float | None) -> str:
        return f"{100 * value:.2f}%" if value is not None else "-"

    def number(value: float | None, digits: int = 4) -> str:
        return f"{value:.{digits}f}" if value is not None else "-"

    shape = "x".join(str(size) for size in payload["input_shape"])
    rows = [
        ("model", f"{payload['model']} ({payload['parameters']:,} parameters)"),
        ("data", f"{payload['data']} {shape}, {payload['num_classes']} classes"),
        ("samples", f"{payload['train_samples']:,} train / {payload['val_samples']:,} val"),
        (
            "optimizer",
            f"{payload['optimizer']} lr {payload['lr']:g}, {payload['lr_schedule']} schedule, "
            f"batch {payload['batch_size']}",
        ),
        ("epochs / steps", f"{payload['epochs']:g} / {payload['steps']:,}"),
        ("validation accuracy", percent(payload["val_accuracy"])),
        ("validation loss", number(payload["val_loss"])),
        ("training loss (last epoch)", number(payload["train_loss"])),
        ("samples/s (training)", f"{payload['samples_per_s']:,.0f}"),
        ("wall time", f"{payload['elapsed_s']:.1f} s"),
    ]
    if payload.get("resumed_from") is not None:
        rows.append(("resumed from step", str(payload["resumed_from"])))
    if payload.get("result_path"):
        rows.append(("results", str(payload["result_path"])))
    for name, value in rows:
        table.add_row(name, value)
    stdout_console.print(table)


@click.command("train", cls=RenamedFlagsCommand, renamed_flags={"--schedule": "--lr-schedule"})
@model_option("lenet5")
@data_option("digits")
@data_dir_option
@input_shape_option
@batch_size_option(DEFAULT_BATCH_SIZE)
@epochs_option(DEFAULT_EPOCHS)
@steps_option(None)
@click.option(
    "--lr",
    type=float,
    default=None,
    help=f"Learning rate [default: {DEFAULT_LR['sgd']} for sgd, {DEFAULT_LR['adam']} for adam].",
)
@click.option(
    "--optimizer",
    default=DEFAULT_OPTIMIZER,
    show_default=True,
    help="sgd (with momentum) or adam.",
)
@click.option(
    "--momentum", type=float, default=0.9, show_default=True, help="SGD momentum (sgd only)."
)
@lr_schedule_option(DEFAULT_SCHEDULE)
@click.option(
    "--warmup-steps",
    type=int,
    default=None,
    help="Warm-up steps of --lr-schedule warm [default: 10% of the run].",
)
@seed_option
@threads_option
@out_option
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --out.")
@click.option("--overwrite", is_flag=True, help="Write over an earlier run in --out.")
@click.option(
    "--checkpoint-every",
    type=int,
    default=None,
    help="Write a checkpoint to --out every N steps (and at the end).",
)
@json_option
@quiet_option
def train_command(
    model: str,
    data: str,
    data_dir: Path | None,
    input_shape: str | None,
    batch_size: int,
    epochs: int,
    steps: int | None,
    lr: float | None,
    optimizer: str,
    momentum: float,
    lr_schedule: str,
    warmup_steps: int | None,
    seed: int,
    threads: int,
    out: Path | None,
    resume: bool,
    overwrite: bool,
    checkpoint_every: int | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train a model in one process with the reference trainer; print accuracy and speed.

    Example: parnn train --model lenet5 --data digits --epochs 3
    """
    from parnn.train import OptimizerConfig, TrainConfig, train
    from parnn.train.setup import check_batch_size, setup_training

    optimizer_name = optimizer.strip().lower()
    optimizer_config = OptimizerConfig(
        name=optimizer_name,
        lr=lr if lr is not None else DEFAULT_LR.get(optimizer_name, DEFAULT_LR["sgd"]),
        momentum=momentum,
    )
    config = TrainConfig(
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        optimizer=optimizer_config,
        lr_schedule=lr_schedule,
        warmup_steps=warmup_steps,
        seed=seed,
        threads=threads,
        checkpoint_every=checkpoint_every,
    )
    if checkpoint_every is not None and out is None:
        raise ConfigError("--checkpoint-every needs --out DIR to write the checkpoints to")
    setup = setup_training(
        model, data, data_dir=data_dir, input_shape=parse_input_shape(input_shape), seed=seed
    )
    check_batch_size(batch_size, len(setup.train_data))
    if out is not None:
        check_out_dir(out, resumes=Resumes.FLAG, resume=resume, overwrite=overwrite)
    result = train(
        setup.model,
        setup.train_data,
        setup.val_data,
        config,
        out_dir=out,
        resume=resume,
        quiet=quiet,
    )
    payload = result_payload(setup, result)
    emit(payload, as_json=as_json, render=lambda: render_result(payload))


COMMANDS = [train_command]
