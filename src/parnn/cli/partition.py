"""`parnn profile`, `parnn partition` and `parnn simulate`: the cost-aware partitioner.

The commands map flags onto :class:`~parnn.partition.measure.resolve.ProfileConfig` and the
planning functions of :mod:`parnn.partition`; the tables are drawn from the JSON payload
that ``--json`` prints (keys documented in docs/partition.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from parnn.cli._options import (
    batch_size_option,
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
from parnn.outdir import check_out_dir
from parnn.partition.schedules import get_schedule, schedule_choices

__all__ = ["COMMANDS", "partition", "profile", "simulate"]

F = TypeVar("F", bound=Callable[..., Any])


def _profile_options(function: F) -> F:
    for decorator in reversed(
        (
            model_option("lenet5"),
            batch_size_option(32),
            input_shape_option,
            click.option(
                "--num-classes",
                type=int,
                default=None,
                help="Classes of the model's head [default: the model's reference head].",
            ),
            threads_option,
            click.option(
                "--cache-dir",
                type=click.Path(path_type=Path),
                default=None,
                envvar="PARNN_CACHE_DIR",
                help="Where profiles and the comm model are cached [default: ~/.cache/parnn].",
            ),
            click.option("--refresh", is_flag=True, help="Measure again even when cached."),
            click.option(
                "--comm",
                type=click.Choice(["measure", "none"]),
                default="measure",
                show_default=True,
                help="Price transfers with the measured comm model, or count them as free.",
            ),
            click.option("--repeats", type=int, default=7, show_default=True, help="Timed passes."),
            click.option(
                "--warmup", type=int, default=2, show_default=True, help="Untimed passes."
            ),
            seed_option,
            out_option,
            click.option("--overwrite", is_flag=True, help="Write over earlier results in --out."),
            json_option,
            quiet_option,
        )
    ):
        function = decorator(function)
    return function


def _plan_options(function: F) -> F:
    for decorator in reversed(
        (
            click.option(
                "--stages",
                type=int,
                default=2,
                show_default=True,
                help="Pipeline ranks (processes); multi-stage schedules put --chunks stages on each.",
            ),
            click.option(
                "--method",
                "--partition",
                "method",
                default="auto",
                show_default=True,
                help="A scheme, a balancer (uniform, params, fwd-time, time, auto), "
                "boundaries 0,5,9,16 or counts 5,4,7 (`partition` also takes 'all').",
            ),
            click.option(
                "--microbatches",
                default="1",
                show_default=True,
                help="Micro-batches per batch, or 'auto' (the fastest predicted).",
            ),
            click.option(
                "--schedule",
                type=click.Choice(schedule_choices()),
                default="gpipe",
                show_default=True,
                help="Pipeline schedule (sets the activations in flight and the prediction).",
            ),
            click.option(
                "--chunks",
                type=int,
                default=None,
                help="Model chunks (stages) per rank for the multi-stage schedules "
                "(interleaved-1f1b, looped-bfs, zero-bubble; zbv and dualpipev take 2) "
                "[default: 2].",
            ),
            click.option(
                "--max-stage-memory",
                default=None,
                help="Per-stage memory cap for --method auto, e.g. 512MiB or 2GB.",
            ),
        )
    ):
        function = decorator(function)
    return function


def _check_out(options: dict[str, Any]) -> None:
    if options["out"] is not None:
        check_out_dir(options["out"], overwrite=options["overwrite"])


def _source(options: dict[str, Any]) -> Any:
    from parnn.partition.measure.cache import default_cache_dir
    from parnn.partition.measure.resolve import ProfileConfig, ProfileSource

    return ProfileSource(
        ProfileConfig(
            model=options["model"],
            input_shape=parse_input_shape(options["input_shape"]),
            num_classes=options["num_classes"],
            threads=options["threads"],
            cache_dir=options["cache_dir"] or default_cache_dir(),
            refresh=options["refresh"],
            comm=options["comm"],
            warmup=options["warmup"],
            repeats=options["repeats"],
            seed=options["seed"],
            quiet=options["quiet"] or options["as_json"],
        )
    )


@click.command()
@_profile_options
def profile(**options: Any) -> None:
    """Time every unit of a model (forward, backward, activation bytes, params); cached."""
    from parnn.partition.measure.cache import profile_file_name
    from parnn.partition.present.report import render_profile
    from parnn.results import write_json

    _check_out(options)
    source = _source(options)
    measured = source(options["batch_size"])
    payload: dict[str, Any] = {"command": "profile", **measured.to_dict()}
    payload["totals"] = {
        key: sum(unit[key] for unit in payload["units"])
        for key in (
            "forward_s",
            "backward_s",
            "update_s",
            "saved_bytes",
            "num_parameters",
            "parameter_bytes",
        )
    }
    payload["cache_file"] = str(
        source.config.cache_dir
        / profile_file_name(
            measured.model,
            measured.input_shape,
            batch_size=measured.batch_size,
            threads=measured.threads,
            num_classes=options["num_classes"],
        )
    )
    payload["file"] = None
    if options["out"] is not None:
        payload["file"] = str(write_json(Path(options["out"]) / "profile.json", payload))
    emit(payload, as_json=options["as_json"], render=lambda: render_profile(payload))


def _layout(options: dict[str, Any]) -> tuple[int, int]:
    """(virtual stages, ranks) from --stages, --schedule and --chunks (the registry's
    rules: parnn.partition.schedules)."""
    from parnn.errors import ConfigError

    ranks = options["stages"]
    if ranks < 1:
        raise ConfigError(f"--stages {ranks}: need at least 1 stage")
    chunks = options["chunks"]
    spec = get_schedule(options["schedule"])
    if not spec.multi_stage:
        if chunks not in (None, 1):
            raise ConfigError(
                f"--chunks {chunks} needs a multi-stage schedule, e.g. --schedule "
                f"interleaved-1f1b ({spec.name} holds one chunk per rank)"
            )
        return ranks, ranks
    chunks = spec.default_stages_per_rank if chunks is None else chunks
    if chunks < 1:
        raise ConfigError(f"--chunks {chunks}: need at least 1 chunk per rank")
    return ranks * chunks, ranks


def _plan_payload(plan: Any, options: dict[str, Any]) -> dict[str, Any]:
    from parnn.partition.present.report import plan_report

    return plan_report(
        plan, command=options["_command"], model=options["model"], profile=options["_profile"]
    )


def _plan(options: dict[str, Any], method: str) -> Any:
    from parnn.partition.measure.resolve import parse_microbatches, resolve_plan
    from parnn.partition.present.report import parse_bytes

    num_stages, ranks = _layout(options)
    cap = options["max_stage_memory"]
    source = options["_source"]
    plan = resolve_plan(
        method,
        source=source,
        num_stages=num_stages,
        batch_size=options["batch_size"],
        num_microbatches=parse_microbatches(options["microbatches"]),
        schedule=options["schedule"],
        num_ranks=ranks,
        max_stage_memory=None if cap is None else parse_bytes(cap),
    )
    options["_profile"] = source(plan.chosen.microbatch_size)
    return plan, num_stages


def _unprofiled(options: dict[str, Any]) -> dict[str, Any]:
    from parnn.partition.present.report import unprofiled_report

    num_stages, _ = _layout(options)
    return unprofiled_report(
        options["model"], options["method"], num_stages=num_stages,
        input_shape=parse_input_shape(options["input_shape"]), num_classes=options["num_classes"],
    )  # fmt: skip


@click.command()
@_profile_options
@_plan_options
@click.option(
    "--no-profile",
    is_flag=True,
    help="Show units and parameters only (schemes, uniform, explicit); measure nothing.",
)
def partition(**options: Any) -> None:
    """Split a model into pipeline stages and price every stage (fwd, bwd, comm, memory)."""
    from parnn.partition.methods import METHODS, check_partition_spec, needs_profile
    from parnn.partition.present.report import methods_report, render_methods, render_partition
    from parnn.results import write_json

    options["_command"] = "partition"
    check_partition_spec(options["method"], extra=("all",))
    _check_out(options)
    if options["no_profile"]:
        if options["method"] == "all" or needs_profile(options["method"]):
            from parnn.errors import ConfigError

            raise ConfigError(
                f"--method {options['method']} needs a profile: drop --no-profile, or use a "
                "scheme, uniform or explicit boundaries"
            )
        payload = _unprofiled(options)
        render: Callable[[], None] = lambda: render_partition(payload)  # noqa: E731
    elif options["method"] == "all":
        options["_source"] = _source(options)
        payload = methods_report(
            [_plan_payload(_plan(options, method)[0], options) for method in METHODS]
        )
        render = lambda: render_methods(payload)  # noqa: E731
    else:
        options["_source"] = _source(options)
        plan, num_stages = _plan(options, options["method"])
        payload = _plan_payload(plan, options)
        render = lambda: render_partition(payload)  # noqa: E731
    if options["out"] is not None:
        payload["file"] = str(write_json(Path(options["out"]) / "partition.json", payload))
    emit(payload, as_json=options["as_json"], render=render)


@click.command()
@_profile_options
@_plan_options
def simulate(**options: Any) -> None:
    """Predict a pipeline step (time, bubble, memory) and draw its timeline (PNG, trace)."""
    from parnn.partition.methods import check_partition_spec
    from parnn.partition.present.plot import plot_timeline, write_simulation_trace
    from parnn.partition.present.report import render_simulation
    from parnn.partition.schedules import format_schedule, schedule_actions
    from parnn.results import write_json

    options["_command"] = "simulate"
    check_partition_spec(options["method"])
    _check_out(options)
    options["_source"] = _source(options)
    plan, num_stages = _plan(options, options["method"])
    payload = _plan_payload(plan, options)
    simulation = plan.chosen.simulation
    payload["simulation"] = simulation.to_dict()
    payload["step_time_s"] = simulation.step_time_s
    payload["bubble_fraction"] = simulation.bubble_fraction
    payload["closed_form_bubble"] = payload["predicted"]["closed_form_bubble"]
    plans = schedule_actions(
        plan.schedule,
        plan.num_ranks,
        simulation.num_microbatches,
        num_chunks=num_stages // plan.num_ranks,
    )
    payload["grid"] = format_schedule(plans) if simulation.num_microbatches <= 16 else None
    files: dict[str, str] = {}
    if options["out"] is not None:
        out = Path(options["out"])
        title = (
            f"{options['model']} {plan.method} ({payload['partition']}), {plan.schedule}, "
            f"m={simulation.num_microbatches}"
        )
        files["timeline_png"] = str(plot_timeline(simulation, out / "timeline.png", title=title))
        files["trace"] = str(
            write_simulation_trace(
                simulation,
                out / "trace.json",
                metadata={"model": options["model"], "partition": payload["partition"]},
            )
        )
        files["json"] = str(out / "simulation.json")
        payload["files"] = files
        write_json(
            out / "simulation.json", payload | {"events": simulation.to_dict(events=True)["events"]}
        )
    payload["files"] = files
    emit(payload, as_json=options["as_json"], render=lambda: render_simulation(payload))


COMMANDS = [profile, partition, simulate]
