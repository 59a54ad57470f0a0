"""``parnn dp``: train data-parallel with one engine, or compare engines side by side.

    parnn dp --engine ddp --model lenet5 --data mnist --data-dir DIR --ranks 2 --epochs 2
    parnn dp --engine ddp --transport mpi ...   (gradients over MPI; auto: MPI if available)
    parnn dp --compare serial,ddp,hogwild,local-sgd --model lenet5 --data mnist --data-dir DIR
    torchrun --nproc-per-node 2 -m parnn.cli dp --engine ddp ...
    mpirun -n 2 parnn dp --engine mpi ...

``--json`` prints one object (stable keys). A run: command ("dp"), mode ("run"),
input_shape, parameters, files, and the run's keys: engine, label, model, data,
transport ("gloo", "mpi" or null), transport_note (why auto chose gloo, else ""), num_train,
num_val, config, steps, updates, samples, train_s, wall_s, startup_s (seconds from the
command's start to the first training step), samples_per_s,
final_train_loss, val, ranks, cpu, curve, machine. A comparison: command, mode
("compare"), engines, speedup (rows: label, engine, transport, ranks, threads,
samples_per_s, train_s, speedup_vs_1_thread, speedup_vs_all_cores,
share_of_independent (null unless ``independent`` ran), accuracy,
accuracy_delta_points, final_train_loss, cpu_total_percent, cpu_process_percent,
peak_rss_mib), runs, files, machine.

``--compare`` is a study (:mod:`parnn.bench.studies.compare`): each engine's run is a cell
of its store in ``--out``, a re-run resumes it, and ``parnn report DIR`` renders it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from parnn.bench.studies.compare import COMPARE_NAMES, parse_compare_list
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
    ranks_option,
    seed_option,
    steps_option,
    threads_option,
)
from parnn.data_parallel.config import (
    AVERAGING_ENGINES,
    ENGINES,
    RANK_PRELOAD,
    TRANSPORTS,
    DataParallelConfig,
    engine_optimizer,
)
from parnn.errors import ConfigError, ParnnWarning
from parnn.progress import stderr_console, stdout_console

if TYPE_CHECKING:  # torch and the engines are imported when a command runs, not at --help
    from parnn.bench.studies.compare_report import ComparedRun
    from parnn.data_parallel.result import DataParallelResult

__all__ = ["COMMANDS", "dp"]


def _percent(value: float | None) -> str:
    return f"{100 * value:.2f}%" if value is not None else "-"


def _render_run(payload: dict[str, Any]) -> None:
    table = Table(title=f"parnn dp --engine {payload['engine']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    config = payload["config"]
    cpu = payload["cpu"]
    rows = [
        ("model / data", f"{payload['model']} on {payload['data']} "
         f"({payload['num_train']:,} train / {payload['num_val']:,} val)"),
        ("ranks x threads", f"{config['num_ranks']} x {config['train']['threads']}"),
        ("batch", f"{config['global_batch_size']} per step "
         f"({config['rank_batch_size']} per rank), accumulate {config['accumulate_steps']}"),
        ("steps / samples", f"{payload['steps']:,} / {payload['samples']:,}"),
        ("validation accuracy", _percent((payload["val"] or {}).get("accuracy"))),
        ("final training loss", f"{payload['final_train_loss']:.4f}"
         if payload["final_train_loss"] is not None else "-"),
        ("samples/s (training)", f"{payload['samples_per_s']:,.0f}"),
        ("training time / wall", f"{payload['train_s']:.2f} s / {payload['wall_s']:.2f} s"),
        ("CPU (machine / this job)", f"{cpu['mean_total_percent']}% / "
         f"{cpu['mean_process_percent']}%"),
        ("peak memory per process", ", ".join(f"{rank['peak_rss_mib']:.0f} MiB"
                                              for rank in payload["ranks"])),
    ]  # fmt: skip
    if config.get("average_every"):
        rows.insert(3, ("average every", f"{config['average_every']} steps"))
    optimizer = config["train"]["optimizer"]
    momentum = f" momentum {optimizer['momentum']}" if optimizer["name"] == "sgd" else ""
    rows.insert(3, ("optimizer", f"{optimizer['name']} lr {optimizer['lr']}{momentum}"))
    if payload["transport"] is not None:
        note = f" ({payload['transport_note']})" if payload["transport_note"] else ""
        rows.insert(2, ("transport", f"{payload['transport']}{note}"))
    for name, value in rows:
        table.add_row(name, value)
    for name, path in payload["files"].items():
        table.add_row(name, str(path))
    stdout_console.print(table)


def _render_comparison(payload: dict[str, Any]) -> None:
    table = Table(title="parnn dp --compare (speedup = samples/s over the baseline)")
    ceiling = any(row.get("share_of_independent") is not None for row in payload["speedup"])
    columns = ["run", "samples/s", "vs 1 thread", "vs all cores"]
    columns += ["of independent"] if ceiling else []
    columns += ["val acc", "delta pts", "CPU machine/job %", "train s"]
    for column in columns:
        table.add_column(column, justify="right" if column != "run" else "left")

    def ratio(value: float | None) -> str:
        return f"{value:.2f}x" if value is not None else "-"

    for row in payload["speedup"]:
        share = [_percent(row["share_of_independent"])] if ceiling else []
        table.add_row(
            row["label"],
            f"{row['samples_per_s']:,.0f}",
            ratio(row["speedup_vs_1_thread"]),
            ratio(row["speedup_vs_all_cores"]),
            *share,
            _percent(row["accuracy"]),
            f"{row['accuracy_delta_points']:+.2f}" if row["accuracy_delta_points"] is not None
            else "-",
            f"{row['cpu_total_percent']}/{row['cpu_process_percent']}",
            f"{row['train_s']:.2f}",
        )  # fmt: skip
    stdout_console.print(table)
    for name, path in payload["files"].items():
        stdout_console.print(f"{name}: {path}")


def _default_out() -> Path:
    return Path("parnn-out") / time.strftime("dp-compare-%Y%m%d-%H%M%S")


@click.command(
    "dp",
    cls=RenamedFlagsCommand,
    renamed_flags={"--processes": "--ranks", "--schedule": "--lr-schedule"},
)
@click.option(
    "--engine", type=str, default=None, help=f"Engine: {', '.join(ENGINES)} [default: ddp]."
)
@click.option(
    "--compare",
    "compare",
    type=str,
    default=None,
    help=f"Run several engines side by side, e.g. serial,ddp,hogwild,local-sgd "
    f"(from {', '.join(COMPARE_NAMES)}); the two serial baselines are always run. "
    "'independent' adds the zero-communication ceiling: local SGD averaged once, at the end. "
    "ddp, local-sgd and independent take a transport: ddp:mpi,ddp:gloo.",
)
@model_option("lenet5")
@data_option("digits")
@data_dir_option
@input_shape_option
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
@ranks_option(None, help="Worker processes (ranks) [default: 2; serial: 1].")
@threads_option
@batch_size_option(64)
@click.option(
    "--per-process-batch",
    is_flag=True,
    help="--batch-size is each rank's batch (global batch = batch x ranks).",
)
@click.option(
    "--accumulate",
    type=int,
    default=1,
    show_default=True,
    help="Gradient accumulation: micro-batches per rank per step.",
)
@click.option(
    "--average-every",
    type=int,
    default=None,
    help="local-sgd/mpi: average the replicas every N steps [default: 1].",
)
@click.option(
    "--transport",
    type=click.Choice(TRANSPORTS, case_sensitive=False),
    default="auto",
    show_default=True,
    help="ddp, local-sgd: how the ranks talk: gloo, mpi (mpi4py under mpiexec), or auto "
    "(mpi where it can be used, else gloo, saying why).",
)
@epochs_option(2)
@steps_option(None)
@click.option("--lr", type=float, default=None, help="Learning rate [default: the engine's, 0.05].")
@click.option("--optimizer", default="sgd", show_default=True, help="sgd (momentum) or adam.")
@click.option(
    "--momentum",
    type=float,
    default=None,
    help="SGD momentum [default: the engine's: 0.9, hogwild 0.7].",
)
@lr_schedule_option("cosine")
@click.option("--drop-last", is_flag=True, help="Drop each epoch's last, incomplete batch.")
@click.option("--no-pin", is_flag=True, help="Do not pin the workers to cores.")
@seed_option
@out_option
@click.option(
    "--overwrite",
    is_flag=True,
    help="Write over an earlier run in --out (--compare: start the comparison there afresh; "
    "re-running the same command otherwise resumes it).",
)
@json_option
@quiet_option
def dp(**options: Any) -> None:
    """Train data-parallel on the cores of this machine (or under torchrun / mpirun)."""
    from parnn.launch.forkserver import start_forkserver

    if not _likely_mpiexec(options["engine"], options["transport"], options["compare"]):
        # The ranks' fork server imports torch and the engines while this process loads data
        # (--compare: what ddp's ranks need too).
        engine = "ddp" if options["compare"] is not None else (options["engine"] or "ddp").lower()
        preload = ["parnn.data_parallel.runner", *RANK_PRELOAD.get(engine, ())]
        start_forkserver(preload, threads=options["threads"])
    if options["compare"] is not None and options["engine"] is not None:
        raise ConfigError("give either --engine (one run) or --compare (several), not both")
    names = parse_compare_list(options["compare"]) if options["compare"] is not None else None
    config = _config(options, compare=names is not None)
    data = {
        "model": options["model"],
        "data": options["data"],
        "data_dir": options["data_dir"],
        "input_shape": parse_input_shape(options["input_shape"]),
        "num_samples": options["num_samples"],
        "val_fraction": options["val_fraction"],
        "overwrite": options["overwrite"],
        "quiet": options["quiet"] or options["as_json"],
    }
    if names is not None:
        from parnn.bench.studies.compare import compare_data_parallel

        payload = compare_data_parallel(
            config, names, out=options["out"] or _default_out(),
            average_every=options["average_every"], on_run=_announcer(options), **data,
        )  # fmt: skip
        payload = {"command": "dp", **payload}
        emit(payload, as_json=options["as_json"], render=lambda: _render_comparison(payload))
        return
    from parnn.data_parallel.api import train_data_parallel

    # No torch (nor matplotlib) imported yet: over MPI, the ranks start first.
    run = train_data_parallel(config, out=options["out"], plot=_plot_run, **data)
    if run is None:
        return  # a rank other than 0 under torchrun/mpirun: rank 0 reports
    payload = {"command": "dp", **run}
    emit(payload, as_json=options["as_json"], render=lambda: _render_run(payload))


def _plot_run(result: DataParallelResult, out: Path) -> Mapping[str, str]:
    """The run's figures (matplotlib is imported once the run is done)."""
    from parnn.bench.data_parallel_plots import plot_run

    return plot_run(result, out)


def _config(options: dict[str, Any], *, compare: bool) -> DataParallelConfig:
    """The flags as a :class:`DataParallelConfig` (for --compare: the base of every run)."""
    engine = (options["engine"] or "ddp").lower()
    ranks = options["ranks"]
    if ranks is None:
        ranks = _launcher_world_size() or (1 if engine == "serial" and not compare else 2)
    average_every = options["average_every"]
    if compare or engine not in AVERAGING_ENGINES:
        if average_every is not None and not compare:
            warnings.warn(
                f"--average-every is ignored by --engine {engine} (it applies to "
                f"{' and '.join(AVERAGING_ENGINES)})",
                ParnnWarning,
                stacklevel=2,
            )
        average_every = None  # --compare passes it to the averaging engines only
    optimizer, lr, momentum = options["optimizer"], options["lr"], options["momentum"]
    return DataParallelConfig.of(
        engine="ddp" if compare else engine,
        transport=options["transport"],
        num_ranks=ranks,
        threads=options["threads"],
        batch_size=options["batch_size"],
        per_process_batch=options["per_process_batch"],
        accumulate_steps=options["accumulate"],
        average_every=average_every,
        epochs=options["epochs"],
        steps=options["steps"],
        # None: each engine's own defaults (ENGINE_DEFAULTS), also per engine in --compare
        optimizer=None if (optimizer, lr, momentum) == ("sgd", None, None)
        else engine_optimizer(engine, name=optimizer, lr=lr, momentum=momentum),
        lr_schedule=options["lr_schedule"],
        seed=options["seed"],
        drop_last=options["drop_last"],
        pin=not options["no_pin"],
    )  # fmt: skip


def _likely_mpiexec(engine: str | None, transport: str, compare: str | None) -> bool:
    """Whether the ranks will come from mpiexec, not from the fork server, judged without
    importing torch: then starting the server would only take a core from this process
    (~1 s of torch imports) while it loads the data. A wrong guess costs only that overlap:
    a launch starts the server itself when it needs it."""
    import importlib.util

    name = (engine or "ddp").lower()
    if name == "mpi":
        return True
    if compare is not None or name not in ("ddp", "local-sgd") or transport == "gloo":
        return False
    return (
        importlib.util.find_spec("mpi4py") is not None and "TORCHELASTIC_RUN_ID" not in os.environ
    )


def _launcher_world_size() -> int | None:
    """The world size set by torchrun or mpirun, when one of them started this process."""
    from parnn.data_parallel.mpi import mpi_env
    from parnn.launch import torchrun_env

    torchrun = torchrun_env()
    if torchrun is not None:
        return torchrun.world_size
    mpi = mpi_env()
    return mpi.size if mpi is not None and mpi.size > 1 else None


def _announcer(options: dict[str, Any]) -> Callable[[ComparedRun], None]:
    """Prints one line per finished run of --compare on stderr (not with --json/--quiet)."""

    def announce(run: ComparedRun) -> None:
        if not options["quiet"] and not options["as_json"]:
            stderr_console.print(
                f"{run.label}: {run.samples_per_s:,.0f} samples/s, val acc {_percent(run.accuracy)}"
            )

    return announce


COMMANDS = [dp]
