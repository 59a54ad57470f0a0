"""``parnn kfold``: K-fold cross-validation of models x LR schedules as parallel jobs.

    parnn kfold --models lenet5,mobilenetv2,vgg16 --lr-schedules cosine,warm --folds 5 \\
        --data mnist --data-dir DIR --epochs 2 --workers auto --compare-serial --out runs/kf
    parnn kfold ... --out runs/kf --resume        # after Ctrl-C or a kill

``--json`` prints one object with these keys (stable): command, out_dir, settings,
summary, timing, per_model, jobs_total, jobs_ok, jobs_failed, failed, cost, jobs, files,
machine (see docs/kfold.md). Exit code 0 when every job finished, 1 when some failed
(the others are recorded), 2 for bad input, 130 when interrupted.
"""

from __future__ import annotations

import time
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
    out_option,
    parse_input_shape,
    quiet_option,
    seed_option,
    steps_option,
    threads_option,
)
from parnn.errors import ConfigError, Terminated
from parnn.outdir import Resumes, check_out_dir
from parnn.progress import stdout_console

if TYPE_CHECKING:  # torch is imported when a command runs, not at --help
    from parnn.jobs.config import KFoldConfig

__all__ = ["COMMANDS", "kfold_command", "render_payload"]

DEFAULT_LR = {"sgd": 0.05, "adam": 0.003}


def _split(text: str, what: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"--{what} is empty: give a comma-separated list")
    return names


def _workers(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--workers {text!r}: give a number >= 1 or 'auto'") from None
    if value < 1:
        raise ConfigError(f"--workers {value}: give a number >= 1 or 'auto'")
    return value


def _percent(value: float | None) -> str:
    return f"{value:.0f} %" if value is not None else "-"


def render_payload(payload: dict[str, Any]) -> None:
    """Tables on stdout: accuracy (mean ± std over folds), timing and speedup, per model."""
    from parnn.jobs.results import format_cell

    settings = payload["settings"]
    modes = [m for m in ("parallel", "serial") if payload["timing"].get(m)]
    table = Table(
        title=f"k-fold accuracy: {settings['folds']} folds, mean ± std over folds "
        f"({settings['data']['name']}, {settings['data']['num_samples']} samples)"
    )
    table.add_column("model", style="bold")
    table.add_column("schedule")
    for mode in modes:
        table.add_column(f"{mode} accuracy", justify="right")
    if len(modes) == 2:
        table.add_column("identical", justify="center")
    for row in payload["summary"]:
        cells = [row["model"], row["lr_schedule"], *[format_cell(row[mode]) for mode in modes]]
        if len(modes) == 2:
            cells.append({True: "yes", False: "NO", None: "-"}[row["identical"]])
        table.add_row(*cells)
    stdout_console.print(table)

    timing = Table(title="time and CPU utilisation")
    for column in ("run", "workers x threads", "wall", "job time", "CPU mean", "CPU full pool"):
        timing.add_column(column, justify="right" if column != "run" else "left")
    for mode in modes:
        t = payload["timing"][mode]
        sessions = f" ({t['sessions']} sessions)" if t["sessions"] > 1 else ""
        timing.add_row(
            mode + sessions,
            f"{t['workers']} x {t['threads']}",
            f"{t['wall_s']:.1f} s",
            f"{t['job_time_s']:.1f} s",
            _percent(t["cpu_mean_percent"]),
            _percent(t["cpu_full_percent"]),
        )
    if payload["timing"].get("speedup") is not None:
        timing.add_row("speedup", "", f"{payload['timing']['speedup']:.2f}x", "", "", "")
    stdout_console.print(timing)

    if len(modes) == 2:
        per_model = Table(title="job time per model (sum over its jobs)")
        for column in ("model", "serial", "parallel", "slowdown when sharing"):
            per_model.add_column(column, justify="right" if column != "model" else "left")
        for row in payload["per_model"]:
            per_model.add_row(
                row["model"],
                f"{row['serial_job_time_s'] or 0:.1f} s",
                f"{row['parallel_job_time_s'] or 0:.1f} s",
                f"{row['slowdown']:.2f}x" if row["slowdown"] is not None else "-",
            )
        stdout_console.print(per_model)
    for failure in payload["failed"]:
        stdout_console.print(
            f"[red]failed[/red] {failure['mode']} {failure['job_id']}: {failure['error']}"
        )
    files = payload.get("files", {})
    if files:
        stdout_console.print(
            "results: " + ", ".join(files[k] for k in ("results_json", "results_csv") if k in files)
        )
        plots = [files[k] for k in ("cpu_plot", "timeline_plot") if k in files]
        if plots:
            stdout_console.print("plots: " + ", ".join(plots))


@click.command(
    "kfold",
    cls=RenamedFlagsCommand,
    renamed_flags={"--schedulers": "--lr-schedules", "--threads-per-job": "--threads"},
)
@click.option(
    "--models",
    default="lenet5,mlp",
    show_default=True,
    help="Comma-separated models (zoo names from `parnn models`, or 'file.py:build').",
)
@click.option(
    "--lr-schedules",
    default="cosine,warm",
    show_default=True,
    help="Comma-separated LR schedules: constant, step, cosine, warm.",
)
@click.option("--folds", type=int, default=5, show_default=True, help="k, the number of folds.")
@data_option("digits")
@data_dir_option
@input_shape_option
@click.option("--num-samples", type=int, default=None, help="Use the first N samples only.")
@batch_size_option(32)
@epochs_option(2)
@steps_option(None)
@click.option("--optimizer", default="adam", show_default=True, help="sgd (momentum) or adam.")
@click.option(
    "--lr",
    type=float,
    default=None,
    help=f"Learning rate [default: {DEFAULT_LR['adam']} for adam, {DEFAULT_LR['sgd']} for sgd].",
)
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum.")
@click.option("--warmup-steps", type=int, default=None, help="Warm-up of 'warm' [default: 10%].")
@seed_option
@click.option(
    "--workers",
    default="auto",
    show_default=True,
    help="Worker processes; auto = usable cores / --threads.",
)
@threads_option
@click.option(
    "--checkpoint-every",
    type=int,
    default=0,
    show_default=True,
    help="Also checkpoint each job every N steps (save_checkpoint_frequency); 0: by time only.",
)
@click.option(
    "--checkpoint-seconds",
    type=float,
    default=5.0,
    show_default=True,
    help="Checkpoint each job every S seconds of its work; 0: by steps only.",
)
@click.option(
    "--print-every",
    type=int,
    default=10,
    show_default=True,
    help="Steps between a job's progress reports (print_frequency).",
)
@click.option(
    "--cost",
    "cost_method",
    type=click.Choice(["profile", "params"]),
    default="profile",
    show_default=True,
    help="Cost estimate that orders jobs longest first: timed profile, or params proxy.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out (finished jobs are kept).")
@click.option(
    "--compare-serial", is_flag=True, help="Also run every job one after another, for speedup."
)
@click.option(
    "--serial-threads",
    type=int,
    default=1,
    show_default=True,
    help="Intra-op threads of the serial run (2: serial using both cores).",
)
@click.option(
    "--cluster",
    default=None,
    help="Run the jobs on a Dask scheduler: tcp://HOST:8786, its scheduler file (.json), or "
    "local[:N] for a LocalCluster here; needs parnn[cluster] (docs/cluster.md).",
)
@out_option
@json_option
@quiet_option
def kfold_command(**options: Any) -> None:
    """K-fold cross-validation of models x LR schedules, as jobs on a pool of pinned cores."""
    from parnn.jobs import WORKER_PRELOAD
    from parnn.launch.forkserver import start_forkserver

    if options["cluster"] is None:  # a Dask cluster starts its own workers
        # The workers' fork server imports torch and the trainer while this loads data.
        start_forkserver(WORKER_PRELOAD, threads=options["threads"])
    from parnn.data import load_dataset
    from parnn.jobs.config import JobsFailedError
    from parnn.jobs.fold_job import OptimizerFactory
    from parnn.jobs.kfold import run_kfold
    from parnn.jobs.store import RunStore
    from parnn.train import OptimizerConfig
    from parnn.train.setup import DIGITS_INPUT_SHAPE, check_batch_size

    out = options["out"]
    if options["resume"] and out is None:
        raise ConfigError("--resume needs --out DIR: the directory of the run to continue")
    model_names = _split(options["models"], "models")
    schedule_names = _split(options["lr_schedules"], "lr-schedules")
    config = _config(options)
    optimizer = options["optimizer"]
    optimizer_config = OptimizerConfig(
        name=optimizer,
        lr=options["lr"] if options["lr"] is not None else DEFAULT_LR.get(optimizer.lower(), 0.05),
        momentum=options["momentum"],
    )
    data = options["data"]
    shape = parse_input_shape(options["input_shape"])
    if shape is None and data.strip().lower() == "digits":
        shape = DIGITS_INPUT_SHAPE
    dataset = load_dataset(
        data, data_dir=options["data_dir"], input_shape=shape,
        num_samples=options["num_samples"], seed=config.train.seed,
    )  # fmt: skip
    # one fold's training set
    check_batch_size(config.train.batch_size, len(dataset) - len(dataset) // config.folds)
    out_dir = out if out is not None else Path("runs") / time.strftime("kfold-%Y%m%d-%H%M%S")
    check_out_dir(
        out_dir, resumes=Resumes.FLAG, resume=config.resume, can_overwrite=False, create=False,
        what="a k-fold run",
    )  # fmt: skip
    try:
        results = run_kfold(
            dataset,
            model_names,
            schedule_names,
            config,
            root_dir=out_dir,
            get_optimizer=OptimizerFactory(optimizer_config),
            late_imports=("parnn.bench.kfold_plots",),  # drawn below
        )
    except KeyboardInterrupt as interrupt:
        store = RunStore(out_dir)
        done = sum(1 for record in store.records() if record.ok) if store.run_file.exists() else 0
        terminated = isinstance(interrupt, Terminated)  # SIGTERM: the same, but exit 143
        click.echo(
            f"parnn: {'terminated' if terminated else 'interrupted'}: {done} jobs finished and are recorded in {out_dir}; "
            f"run the same command with --resume --out {out_dir} to continue",
            err=True,
        )
        raise click.exceptions.Exit(143 if terminated else 130) from None
    from parnn.bench.kfold_plots import save_kfold_plots

    save_kfold_plots(results)
    payload = {
        "command": "kfold",
        "out_dir": str(out_dir),
        **results.to_dict(),
        "files": results.files,
    }
    emit(payload, as_json=options["as_json"], render=lambda: render_payload(payload))
    if results.failed:
        first = results.failed[0]
        raise JobsFailedError(
            f"{len(results.failed)} of {len(results.jobs)} jobs failed, e.g. {first.mode} "
            f"{first.job_id}: {first.error}; the others finished; see {out_dir}/jobs.jsonl, "
            "fix the cause and rerun with --resume to retry only the failed jobs"
        )


def _config(options: dict[str, Any]) -> KFoldConfig:
    """The flags as a :class:`KFoldConfig` (validated)."""
    from parnn.jobs.config import KFoldConfig

    return KFoldConfig.of(
        folds=options["folds"],
        batch_size=options["batch_size"],
        epochs=options["epochs"],
        steps=options["steps"],
        save_checkpoint_frequency=options["checkpoint_every"] or None,
        checkpoint_interval_s=options["checkpoint_seconds"] or None,
        print_frequency=options["print_every"],
        warmup_steps=options["warmup_steps"],
        workers=_workers(options["workers"]),
        threads=options["threads"],
        seed=options["seed"],
        compare_serial=options["compare_serial"],
        serial_threads=options["serial_threads"],
        resume=options["resume"],
        quiet=options["quiet"],
        cost_method=options["cost_method"],
        cluster=options["cluster"],
    )


COMMANDS = [kfold_command]
