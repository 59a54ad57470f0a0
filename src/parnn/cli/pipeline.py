"""`parnn pipeline` (pipeline-parallel training) and `parnn schedules` (what torch offers)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
from parnn.outdir import check_out_dir
from parnn.progress import stdout_console

if TYPE_CHECKING:  # torch is imported when a command runs, not at --help
    from parnn.pipeline import PipelineConfig, PipelineResult

__all__ = ["COMMANDS"]


def _fail_at(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    try:
        rank, step = (int(part) for part in text.split(":"))
    except ValueError:
        raise ConfigError(f"--fail-at {text!r}: expected RANK:STEP, e.g. 1:3") from None
    return rank, step


@click.command(
    "pipeline", cls=RenamedFlagsCommand, renamed_flags={"--threads-per-stage": "--threads"}
)
@model_option("lenet5")
@data_option("digits")
@data_dir_option
@input_shape_option
@click.option(
    "--stages",
    type=int,
    default=2,
    show_default=True,
    help="Pipeline depth: ranks (processes, one pinned core each) in one pipeline; each "
    "holds --stages-per-rank model stages.",
)
@click.option(
    "--replicas",
    type=int,
    default=1,
    show_default=True,
    help="Copies of the pipeline (hybrid: replicas x stages processes, gradients averaged).",
)
@click.option(
    "--stages-per-rank",
    type=int,
    default=1,
    show_default=True,
    help="Model stages per rank (interleaved, looped, V schedules): stages x this in all.",
)
@click.option(
    "--partition",
    default="equal-load",
    show_default=True,
    help="Boundaries 0,3,5 / unit counts 3,2 / a scheme / a method (auto, time, params...).",
)
@click.option(
    "--schedule",
    default="gpipe",
    show_default=True,
    help="Pipeline schedule (see `parnn schedules`).",
)
@click.option(
    "--vertical-sync",
    is_flag=True,
    help="pipedream, pipedream-2bw: every stage uses the first stage's weight version.",
)
@click.option(
    "--microbatches",
    default="4",
    show_default=True,
    help="Micro-batches per mini-batch, or 'auto' (the simulator's fastest).",
)
@batch_size_option(32)
@epochs_option(1)
@steps_option(None)
@click.option(
    "--lr", type=float, default=None, help="Learning rate [default: 0.003 adam, 0.05 sgd]."
)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum.")
@lr_schedule_option("constant")
@seed_option
@threads_option
@click.option("--no-eval", is_flag=True, help="Skip the held-out evaluation at each epoch's end.")
@click.option(
    "--transport",
    type=click.Choice(["auto", "shm", "gloo"]),
    default="auto",
    show_default=True,
    help="Stages' sends/receives: shared memory (shm), gloo, or shm within a host (auto).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    envvar="PARNN_CACHE_DIR",
    help="Profile cache for cost-aware partitions and --microbatches auto.",
)
@click.option(
    "--checkpoint-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="pipedream, pipedream-2bw: checkpoint every stage here at each epoch's end.",
)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --checkpoint-dir.")
@click.option("--fail-at", default=None, hidden=True, help="TEST HOOK: RANK:STEP raises there.")
@out_option
@click.option("--overwrite", is_flag=True, help="Write over an earlier run in --out.")
@json_option
@quiet_option
def pipeline(**options: Any) -> None:
    """Train MODEL split into pipeline stages, one pinned process per stage (rank 0 the
    master), on torch.distributed.pipelining; print per-stage costs and throughput."""
    from parnn.launch.forkserver import start_forkserver

    # The ranks' fork server imports torch and the pipeline while this process plans.
    start_forkserver(["parnn.pipeline.worker"], threads=options["threads"])
    from parnn.partition.measure.cache import default_cache_dir
    from parnn.pipeline import run_pipeline

    config = _config(options)
    if options["out"] is not None:
        check_out_dir(options["out"], overwrite=options["overwrite"])
    cache_dir = options["cache_dir"] if options["cache_dir"] is not None else default_cache_dir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_pipeline(
            config, quiet=options["quiet"] or options["as_json"], profile_cache_dir=cache_dir
        )
    for warning in caught:
        click.echo(f"parnn: warning: {' '.join(str(warning.message).split())}", err=True)
    if result is None:  # a non-master rank under torchrun
        return
    payload = {"command": "pipeline", **result.to_dict()}
    emit(payload, as_json=options["as_json"], render=lambda: _render(result))


def _config(options: dict[str, Any]) -> PipelineConfig:
    """The flags as a :class:`PipelineConfig` (validated)."""
    from parnn.pipeline import PipelineConfig
    from parnn.train import OptimizerConfig

    fail_rank, fail_step = _fail_at(options["fail_at"])
    optimizer, lr = options["optimizer"], options["lr"]
    return PipelineConfig.of(
        model=options["model"],
        data=options["data"],
        data_dir=options["data_dir"],
        input_shape=parse_input_shape(options["input_shape"]),
        num_ranks=options["stages"],
        replicas=options["replicas"],
        stages_per_rank=options["stages_per_rank"],
        partition=options["partition"],
        schedule=options["schedule"],
        vertical_sync=options["vertical_sync"],
        num_microbatches=_microbatches(options["microbatches"]),
        batch_size=options["batch_size"],
        epochs=options["epochs"],
        steps=options["steps"],
        optimizer=OptimizerConfig(
            name=optimizer,
            lr=lr if lr is not None else (0.003 if optimizer == "adam" else 0.05),
            momentum=options["momentum"],
        ),
        lr_schedule=options["lr_schedule"],
        seed=options["seed"],
        threads=options["threads"],
        evaluate=not options["no_eval"],
        transport=options["transport"],
        out_dir=options["out"],
        checkpoint_dir=options["checkpoint_dir"],
        resume=options["resume"],
        fail_rank=fail_rank,
        fail_at_step=fail_step,
    )


def _microbatches(text: str) -> int | Literal["auto"]:
    """--microbatches: a number, or 'auto' (the library asks the simulator)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--microbatches {text!r}: give a positive integer or 'auto'") from None


def _render(result: PipelineResult) -> None:
    prediction = result.prediction
    config = result.config
    hybrid = result.replicas > 1
    ranks = (
        f"{result.replicas} replicas x {result.world_size // result.replicas} ranks"
        if hybrid
        else f"{result.world_size} ranks"
    )
    title = (
        f"{config['model']} on {config['data']}: {ranks}, "
        f"{config['schedule']}, m={config['num_microbatches']}, partition {result.partition}"
    )
    table = Table(title=title)
    columns = ["stage", "rank", "units", "params", "fwd ms", "bwd ms", "wait ms", "idle"]
    if hybrid:
        columns[1:1] = ["replica"]
        columns.insert(-1, "allreduce ms")
    for column in columns:
        table.add_column(column, justify="left" if column == "units" else "right")
    for s in result.stages:
        units = f"{s.units[0]}..{s.units[-1]}" if len(s.units) > 1 else s.units[0]
        cells = [
            str(s.stage),
            str(s.rank),
            units,
            f"{s.parameters:,}",
            f"{1000 * s.forward_s:.2f}",
            f"{1000 * s.backward_s:.2f}",
            f"{1000 * s.wait_s:.2f}",
            f"{100 * s.idle_share:.0f}%",
        ]
        if hybrid:
            cells[1:1] = [str(s.replica)]
            cells.insert(-1, f"{1000 * s.allreduce_s:.2f}")
        table.add_row(*cells)
    stdout_console.print(table)
    summary = Table(show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("step time (median)", f"{1000 * result.step_time_s:.2f} ms")
    summary.add_row("throughput", f"{result.samples_per_s:,.0f} samples/s")
    summary.add_row("bubble fraction", f"{100 * result.bubble_fraction:.1f}%")
    if prediction is not None:
        summary.add_row("predicted step (simulator)", f"{1000 * prediction['step_time_s']:.2f} ms")
    for boundary in result.boundaries:
        summary.add_row(
            f"bytes after stage {boundary.after_stage}",
            f"{boundary.activation_bytes / 1024:.1f} KiB/micro-batch, "
            f"{boundary.bytes_per_step / 1024:.1f} KiB/step",
        )
    for stash in result.weight_stash or []:  # asynchronous schedules
        summary.add_row(
            f"stage {stash['stage']}: stashed weights / activations",
            f"{stash['peak_versions']} x {stash['parameter_bytes'] / 1024:.1f} KiB / "
            f"{stash['peak_in_flight']} x {stash['activation_bytes'] / 1024:.1f} KiB",
        )
    if result.val_accuracy is not None:
        summary.add_row("validation accuracy", f"{100 * result.val_accuracy:.2f}%")
    summary.add_row("steps / wall time", f"{result.steps} / {result.wall_s:.1f} s")
    for name, path in result.files.items():
        summary.add_row(name, path)
    stdout_console.print(summary)


@click.command("schedules")
@json_option
def schedules(as_json: bool) -> None:
    """List the pipeline schedules: torch class, constraints, and what the simulator replays."""
    from parnn.partition.schedules import SCHEDULES

    rows: list[dict[str, Any]] = [
        {
            "name": spec.name,
            "aliases": list(spec.aliases),
            "torch_class": spec.torch_class,
            "stages_per_rank": spec.stages_per_rank_text,
            "layout": spec.layout,
            "microbatches": {0: "any", 1: ">= ranks"}.get(
                spec.microbatches_per_rank, f">= {spec.microbatches_per_rank} x ranks"
            )
            + (", a multiple of max(1, m // ranks)" if spec.rounds else ""),
            "backward": "I + W" if spec.split_backward else "B",
            "simulated": True,
            "description": spec.description,
        }
        for spec in SCHEDULES.values()
        if spec.available
    ]

    def render() -> None:
        table = Table(title="pipeline schedules (torch.distributed.pipelining; parnn's PipeDream)")
        for column in ("name", "torch class", "stages/rank", "micro-batches", "description"):
            table.add_column(column)
        for row in rows:
            name = str(row["name"]) + "".join(f" ({alias})" for alias in row["aliases"])
            table.add_row(
                name,
                row["torch_class"],
                row["stages_per_rank"],
                row["microbatches"],
                row["description"],
            )
        stdout_console.print(table)
        stdout_console.print(
            "every schedule is also replayed by `parnn simulate --schedule NAME`", style="dim"
        )

    emit({"schedules": rows}, as_json=as_json, render=render)


COMMANDS = [pipeline, schedules]
