"""``parnn study pipedream``: PipeDream's asynchronous pipeline against gpipe and 1f1b,
throughput, the simulator's prediction, and accuracy against time (the study of
``benchmarks/pipedream/``).

``--json`` prints one object (stable keys): command ("study pipedream"), study, settings,
load_average_start, predict (rows: label, stages, microbatches, partition, predicted {schedule:
step_time_s, samples_per_s, bubble_fraction}, pipedream_vs_1f1b), throughput (rows: label,
stages, microbatches, oversubscribed, partition, samples_per_s {schedule: summary}, bubble_fraction,
pipedream_vs_1f1b, pipedream_vs_1f1b_per_repeat, pipedream_vs_1f1b_whole_run, runs),
accuracy (label, partition, curves {name: points (epoch, samples, train_s, val_accuracy),
final_accuracy, time_to_target_s, epochs_to_target, accuracy_minus_sync_points,
time_to_target_vs_sync}), load_average_end, machine, file.

The study runs on the one store in ``--out`` (``study.json``, ``cells.jsonl``: one cell per
prediction, throughput run and accuracy side): re-running the same command resumes it,
other settings there are refused, and ``parnn report DIR`` renders its report.
"""

from __future__ import annotations

from pathlib import Path

import click

from parnn.cli._options import data_dir_option, emit, json_option, quiet_option
from parnn.progress import stderr_console, stdout_console

__all__ = ["pipedream"]


@click.command("pipedream")
@data_dir_option
@click.option("--stages", default="2", show_default=True, help="Pipeline depths, e.g. 2,4.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Throughput repeats.")
@click.option("--steps", type=int, default=40, show_default=True, help="Steps per throughput run.")
@click.option("--epochs", type=int, default=6, show_default=True, help="Epochs per accuracy run.")
@click.option("--target-accuracy", type=float, default=0.97, show_default=True)
@click.option("--models", default="lenet5,vgg-cifar", show_default=True, help="Throughput cells.")
@click.option(
    "--microbatches",
    default="4",
    show_default=True,
    help="Micro-batches of 8 samples a mini-batch in the throughput cells, e.g. 2,4.",
)
@click.option(
    "--parts", default="throughput,predict,accuracy", show_default=True, help="What to run."
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/pipedream"))
@click.option(
    "--overwrite",
    is_flag=True,
    help="Start afresh over an earlier study in --out (re-running otherwise resumes it).",
)
@json_option
@quiet_option
def pipedream(
    data_dir: Path | None,
    stages: str,
    repeats: int,
    steps: int,
    epochs: int,
    target_accuracy: float,
    models: str,
    microbatches: str,
    parts: str,
    out: Path,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """PipeDream (asynchronous, weight stashing) vs gpipe and 1f1b: throughput on the same
    partition and micro-batch size, and validation accuracy against time on LeNet-5."""
    from parnn.bench.cells import STUDY_FILE, StudyStore
    from parnn.bench.studies.pipedream import (
        RESULT_FILE,
        PipeDreamStudyConfig,
        run_pipedream_study,
    )
    from parnn.errors import ConfigError
    from parnn.outdir import Resumes, check_out_dir

    try:
        depths = tuple(int(v) for v in stages.split(","))
    except ValueError:
        raise ConfigError(f"--stages {stages!r}: give whole numbers, e.g. 2,4") from None
    try:
        counts = tuple(int(v) for v in microbatches.split(","))
    except ValueError:
        raise ConfigError(
            f"--microbatches {microbatches!r}: give whole numbers, e.g. 2,4"
        ) from None
    config = PipeDreamStudyConfig(
        data_dir=data_dir,
        stages=depths,
        repeats=repeats,
        steps=steps,
        epochs=epochs,
        target_accuracy=target_accuracy,
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        microbatches=counts,
        parts=tuple(p.strip() for p in parts.split(",") if p.strip()),
    )
    # an earlier study here resumes (re-running skips its finished cells); anything else
    # needs --overwrite
    resumes = Resumes.RERUN if (out / STUDY_FILE).exists() else Resumes.NEVER
    check_out_dir(out, resumes=resumes, overwrite=overwrite)
    if overwrite:
        StudyStore(out).clear()
    silent = quiet or as_json
    result = run_pipedream_study(
        config,
        report=None if silent else lambda line: stderr_console.print(line),
        out=out,
        quiet=silent,
    )
    path = out / RESULT_FILE
    payload = {"command": "study pipedream", **result, "file": str(path)}

    def render() -> None:
        for row in result.get("throughput", {}).get("rows", []):
            stdout_console.print(
                f"{row['label']} k={row['stages']}"
                f"{' (oversubscribed)' if row['oversubscribed'] else ''}: pipedream/1f1b "
                f"{row['pipedream_vs_1f1b']['median']:.2f}x steady state "
                f"(per repeat {', '.join(f'{r:.2f}' for r in row['pipedream_vs_1f1b_per_repeat'])})"
            )
        for name, curve in result.get("accuracy", {}).get("curves", {}).items():
            stdout_console.print(
                f"{name}: final {100 * curve['final_accuracy']:.2f}% "
                f"({curve['accuracy_minus_sync_points']:+.2f} points vs 1f1b), "
                f"target after {curve['time_to_target_s']} s"
            )
        stdout_console.print(f"wrote {path}")

    emit(payload, as_json=as_json, render=render)
