"""``parnn dp``: train data-parallel with one engine, or compare engines side by side.

    parnn dp --engine ddp --model lenet5 --data mnist --data-dir DIR --processes 2 --epochs 2
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
("compare"), engines, speedup (rows: label, engine, transport, processes, threads_per_process,
samples_per_s, train_s, speedup_vs_1_thread, speedup_vs_all_cores,
share_of_independent (null unless ``independent`` ran), accuracy,
accuracy_delta_points, final_train_loss, cpu_total_percent, cpu_process_percent,
peak_rss_mib), runs, files, machine.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from parnn.bench.studies.compare import COMPARE_NAMES, parse_compare_list
from parnn.cli._options import (
    batch_size_option,
    data_dir_option,
    data_option,
    emit,
    epochs_option,
    input_shape_option,
    json_option,
    model_option,
    out_option,
    parse_input_shape,
    quiet_option,
    seed_option,
    steps_option,
    threads_option,
)
from parnn.data_parallel.config import ENGINES, TRANSPORTS, DataParallelConfig, engine_optimizer
from parnn.errors import ConfigError
from parnn.outdir import check_out_dir
from parnn.progress import stderr_console, stdout_console
from parnn.results import machine_facts, write_json

if TYPE_CHECKING:  # torch and the engines are imported when a command runs, not at --help
    import torch

    from parnn.bench.studies.compare import Comparison
    from parnn.data_parallel.result import DataParallelResult
    from parnn.train.setup import TrainingSetup

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
        ("processes x threads", f"{config['num_processes']} x {config['threads_per_process']}"),
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
    optimizer = config["optimizer"]
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


def _write_run_files(
    result: DataParallelResult, model: torch.nn.Module, out: Path
) -> dict[str, str]:
    import torch

    from parnn.bench.data_parallel_plots import plot_cpu, plot_loss

    out.mkdir(parents=True, exist_ok=True)
    files = {
        "result": str(write_json(out / "result.json", result.to_dict(cpu_trace=True))),
        "loss_vs_time": str(plot_loss([result], out / "loss_vs_time.png", x_axis="time")),
        "loss_vs_samples": str(plot_loss([result], out / "loss_vs_samples.png", x_axis="samples")),
        "cpu": str(plot_cpu([result], out / "cpu.png")),
        "model": str(out / "model.pt"),
    }
    torch.save(model.state_dict(), out / "model.pt")
    return files


def _write_comparison_files(
    comparison: Comparison, payload: dict[str, Any], out: Path
) -> dict[str, str]:
    from parnn.bench.data_parallel_plots import plot_cpu, plot_loss, plot_throughput

    out.mkdir(parents=True, exist_ok=True)
    runs = comparison.runs
    files = {
        "loss_vs_time": str(plot_loss(runs, out / "loss_vs_time.png", x_axis="time")),
        "loss_vs_samples": str(plot_loss(runs, out / "loss_vs_samples.png", x_axis="samples")),
        "cpu": str(plot_cpu(runs, out / "cpu.png")),
        "throughput": str(plot_throughput(runs, out / "throughput.png")),
        "result": str(out / "compare.json"),
    }
    write_json(
        out / "compare.json", {**payload, "files": files, **comparison.to_dict(cpu_trace=True)}
    )
    return files


def _default_out() -> Path:
    return Path("parnn-out") / time.strftime("dp-compare-%Y%m%d-%H%M%S")


@click.command("dp")
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
@click.option(
    "--processes", type=int, default=None, help="Worker processes (ranks) [default: 2; serial: 1]."
)
@threads_option
@batch_size_option(64)
@click.option(
    "--per-process-batch",
    is_flag=True,
    help="--batch-size is each rank's batch (global batch = batch x processes).",
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
@click.option(
    "--schedule",
    default="cosine",
    show_default=True,
    help="LR schedule per step: constant, step, cosine, warm.",
)
@click.option("--drop-last", is_flag=True, help="Drop each epoch's last, incomplete batch.")
@click.option("--no-pin", is_flag=True, help="Do not pin the workers to cores.")
@seed_option
@out_option
@click.option("--overwrite", is_flag=True, help="Write over an earlier run in --out.")
@json_option
@quiet_option
def dp(
    engine: str | None, compare: str | None, model: str, data: str, data_dir: Path | None,
    input_shape: str | None, num_samples: int | None, val_fraction: float,
    processes: int | None, threads: int, batch_size: int, per_process_batch: bool,
    accumulate: int, average_every: int | None, transport: str, epochs: int,
    steps: int | None, lr: float | None, optimizer: str, momentum: float | None, schedule: str,
    drop_last: bool, no_pin: bool, seed: int, out: Path | None, overwrite: bool, as_json: bool,
    quiet: bool,
) -> None:  # fmt: skip
    """Train data-parallel on the cores of this machine (or under torchrun / mpirun)."""
    from parnn.launch.forkserver import start_forkserver

    if not _likely_mpiexec(engine, transport, compare):  # mpiexec starts its own ranks
        # The ranks' fork server imports torch and the engines while this process loads data.
        start_forkserver(["parnn.data_parallel.runner"], threads=threads)
    from parnn.data_parallel.runner import run_data_parallel
    from parnn.data_parallel.transport import resolve_transport
    from parnn.train.setup import check_batch_size, setup_training

    if compare is not None and engine is not None:
        raise ConfigError("give either --engine (one run) or --compare (several), not both")
    names = parse_compare_list(compare) if compare is not None else None
    engine = (engine or "ddp").lower()
    if processes is None:
        processes = _launcher_world_size() or (1 if engine == "serial" and names is None else 2)
    config = DataParallelConfig(
        engine="ddp" if names is not None else engine,
        transport=transport,
        num_processes=processes,
        threads_per_process=threads,
        batch_size=batch_size,
        per_process_batch=per_process_batch,
        accumulate_steps=accumulate,
        average_every=average_every if engine in ("local-sgd", "mpi") and names is None
        else _ignored_average_every(average_every, engine, names),
        epochs=epochs,
        steps=steps,
        # None: each engine's own defaults (ENGINE_DEFAULTS), also per engine in --compare
        optimizer=None if (optimizer, lr, momentum) == ("sgd", None, None)
        else engine_optimizer(engine, name=optimizer, lr=lr, momentum=momentum),
        schedule=schedule,
        seed=seed,
        drop_last=drop_last,
        pin=not no_pin,
    )  # fmt: skip
    if names is None:
        resolve_transport(config)  # MPI asked for but unusable: say so before loading data
    setup = setup_training(
        model, data, data_dir=data_dir, input_shape=parse_input_shape(input_shape), seed=seed,
        val_fraction=val_fraction, num_samples=num_samples,
    )  # fmt: skip
    check_batch_size(batch_size, len(setup.train_data), copies=config.batch_copies)
    if names is not None:
        out = check_out_dir(out or _default_out(), overwrite=overwrite)
        _compare(
            setup, config, names, average_every=average_every, out=out,
            as_json=as_json, quiet=quiet,
        )  # fmt: skip
        return
    if out is not None:
        check_out_dir(out, overwrite=overwrite)
    result = run_data_parallel(
        setup.model, setup.train_data, setup.val_data, config,
        model_name=setup.model_name, data_name=setup.data_name, quiet=quiet or as_json,
    )  # fmt: skip
    if result is None:
        return  # a rank other than 0 under torchrun/mpirun: rank 0 reports
    files = _write_run_files(result, setup.model, out) if out is not None else {}
    payload = {
        "command": "dp",
        "mode": "run",
        "input_shape": list(setup.input_shape),
        "parameters": setup.num_parameters,
        "files": files,
        **result.to_dict(),
    }
    emit(payload, as_json=as_json, render=lambda: _render_run(payload))


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


def _ignored_average_every(
    average_every: int | None, engine: str, names: list[str] | None
) -> int | None:
    if average_every is not None and names is None:
        stderr_console.print(
            f"[yellow]warning:[/] --average-every is ignored by --engine {engine} "
            "(it applies to local-sgd and mpi)"
        )
    return None


def _compare(
    setup: TrainingSetup,
    base: DataParallelConfig,
    names: list[str],
    *,
    average_every: int | None,
    out: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    from parnn.bench.studies.compare import comparison_configs, run_comparison

    configs = comparison_configs(base, names, average_every=average_every)
    initial = copy.deepcopy(setup.model)

    def fresh_model() -> torch.nn.Module:
        return copy.deepcopy(initial)

    def announce(result: DataParallelResult) -> None:
        if not quiet and not as_json:
            stderr_console.print(
                f"{result.label}: {result.samples_per_s:,.0f} samples/s, "
                f"val acc {_percent(result.val.accuracy if result.val else None)}"
            )

    comparison = run_comparison(
        fresh_model, setup.train_data, setup.val_data, configs,
        model_name=setup.model_name, quiet=quiet or as_json, on_run=announce,
    )  # fmt: skip
    payload: dict[str, Any] = {
        "command": "dp",
        "mode": "compare",
        "engines": names,
        "model": setup.model_name,
        "data": setup.data_name,
        "input_shape": list(setup.input_shape),
        "parameters": setup.num_parameters,
        "speedup": comparison.speedups(),
        "machine": machine_facts(),
    }
    payload["files"] = _write_comparison_files(comparison, payload, out)
    payload["runs"] = [run.to_dict() for run in comparison.runs]
    emit(payload, as_json=as_json, render=lambda: _render_comparison(payload))


COMMANDS = [dp]
