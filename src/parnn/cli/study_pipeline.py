"""`parnn study schemes | microbatches | scaling`: the pipeline studies, re-run with one command.

The lead attaches :data:`STUDY_COMMANDS` to the ``study`` group. Every command writes a
resumable results directory (``--out``; re-running skips finished cells), renders
``report.md`` and ``report.html`` there (``parnn report DIR`` re-renders), and with
``--json`` prints one object::

    {"command", "study", "out", "settings", "cells", "measured", "resumed", "failed",
     "report": {"markdown", "html"}, "results": [...], + "best" | "optimum" | "scaling"}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.table import Table

from parnn.cli._options import emit, json_option, parse_input_shape, quiet_option
from parnn.errors import ConfigError
from parnn.outdir import Resumes, check_out_dir
from parnn.progress import stdout_console

if TYPE_CHECKING:  # the study harness imports torch and matplotlib: only when a study runs
    from parnn.bench.studies.driver import StudyOutcome

__all__ = ["STUDY_COMMANDS", "outcome_payload", "parse_int_list", "parse_name_list"]

F = TypeVar("F", bound=Callable[..., Any])

# parnn.bench.studies.settings.STUDY_INPUT_SHAPE, written out so that --help imports no
# torch (a test checks that the two agree).
_DEFAULT_INPUT = "3x32x32"


def parse_int_list(text: str, flag: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); anything else is a one-line error naming the flag."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r}: expected whole numbers separated by commas, e.g. {flag} 1,2,4"
        ) from None
    if not values:
        raise ConfigError(f"{flag} is empty: give at least one number, e.g. {flag} 1,2,4")
    return values


def parse_name_list(text: str, flag: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if not names:
        raise ConfigError(f"{flag} is empty: give at least one name")
    return names


def _run_options(*, schedule: str, repeats: int = 3, steps: int = 2) -> Callable[[F], F]:
    """The flags every pipeline study shares."""
    options = [
        click.option("--schedule", default=schedule, show_default=True, help="Pipeline schedule."),
        click.option(
            "--input",
            "input_shape",
            default=_DEFAULT_INPUT,
            show_default=True,
            help="Input shape CxHxW of the synthetic samples; 3x224x224 is the papers' size.",
        ),
        click.option(
            "--steps",
            type=int,
            default=steps,
            show_default=True,
            help="Timed training steps per repeat.",
        ),
        click.option(
            "--warmup-steps",
            type=int,
            default=1,
            show_default=True,
            help="Untimed steps before the timed ones.",
        ),
        click.option(
            "--repeats",
            type=int,
            default=repeats,
            show_default=True,
            help="Repeats per cell (mean and std of those within ±1.5σ).",
        ),
        click.option(
            "--isolate-repeats",
            is_flag=True,
            help="Launch the pipeline afresh for every repeat (slower; the nn_pipeline "
            "study's method) instead of timing consecutive blocks of one launch.",
        ),
        click.option(
            "--threads",
            type=int,
            default=1,
            show_default=True,
            help="Intra-op threads per stage process.",
        ),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seed for weights and data."
        ),
        click.option(
            "--no-predict",
            is_flag=True,
            help="Skip profiling the model and the simulator's predictions.",
        ),
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            default=None,
            help="Results directory (default results/<study>); re-running resumes it.",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(path_type=Path),
            default=None,
            help="Where profiles and the comm model are cached (default OUT/profiles).",
        ),
        click.option(
            "--cluster",
            default=None,
            metavar="ADDRESS|local[:N]|FILE.json",
            help="Run each cell as one Dask task (needing a core per stage) on this "
            "scheduler; local[:N] starts a LocalCluster here. A remote cluster needs an "
            "absolute --out on storage every worker reaches.",
        ),
        json_option,
        quiet_option,
    ]

    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _common(options: Mapping[str, Any]) -> dict[str, Any]:
    """The RunSettings fields from the shared flags."""
    shape = parse_input_shape(options["input_shape"])
    assert shape is not None
    return {
        "schedule": options["schedule"],
        "input_shape": shape,
        "steps": options["steps"],
        "warmup_steps": options["warmup_steps"],
        "repeats": options["repeats"],
        "threads": options["threads"],
        "seed": options["seed"],
        "predict": not options["no_predict"],
        "isolate_repeats": options["isolate_repeats"],
    }


def _check_cluster(options: Mapping[str, Any], out: Path) -> Any:
    """The --cluster of a study, checked before anything runs (Dask installed; a remote
    cluster's --out and cache absolute: its workers write the profiles there)."""
    cluster = options["cluster"]
    if cluster is not None:
        from parnn.jobs.dask_executor import check_cluster_run

        check_cluster_run(cluster, out)
        if options["cache_dir"] is not None:
            check_cluster_run(cluster, options["cache_dir"])
    return cluster


def _engines(out: Path, cache_dir: Path | None) -> tuple[Any, Any]:
    """The real measure and predict functions (the pipeline and the simulator), sharing one
    cache of profiles and comm model."""
    from parnn.bench.studies.engine import PipelineEngine
    from parnn.bench.studies.predict import SimulatorPredictor

    cache = cache_dir if cache_dir is not None else out / "profiles"
    return PipelineEngine(cache_dir=cache), SimulatorPredictor(cache_dir=cache)


def _resolver(out: Path, cache_dir: Path | None) -> Any:
    """Resolves a cost-aware partition as the pipeline would, from the same cache."""
    from parnn.bench.studies.engine import resolve_boundaries

    cache = cache_dir if cache_dir is not None else out / "profiles"
    return lambda spec: resolve_boundaries(spec, cache_dir=cache)


def _result_row(record: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {**record["key"], "status": record.get("status")}
    if record.get("status") == "ok":
        step = record["step_time_s"]
        prediction = record.get("prediction") or {}
        row.update(
            {
                "step_time_s": step["mean"],
                "step_time_std_s": step["std"],
                "kept": step["kept"],
                "runs": step["num_runs"],
                "samples_per_s": record["samples_per_s"]["mean"],
                "boundaries": record["partition"]["boundaries"],
                "predicted_step_time_s": prediction.get("step_time_s"),
            }
        )
    else:
        row["error"] = record.get("error")
    return row


def outcome_payload(outcome: StudyOutcome) -> dict[str, Any]:
    """The documented --json object of a study run (study-specific keys added by callers)."""
    return {
        "command": f"study {outcome.kind}",
        "study": outcome.kind,
        "out": str(outcome.directory),
        "settings": dict(outcome.header.get("settings", {})),
        "cells": len(outcome.records),
        "measured": outcome.measured_now,
        "resumed": outcome.resumed,
        "failed": len(outcome.failed),
        "report": {
            "markdown": None if outcome.report_markdown is None else str(outcome.report_markdown),
            "html": None if outcome.report_html is None else str(outcome.report_html),
        },
        "results": [_result_row(r) for r in outcome.records],
    }


def _render(payload: Mapping[str, Any], columns: Sequence[str], title: str) -> None:
    table = Table(title=title)
    for column in (*columns, "ms per step", "samples/s", "predicted ms", "status"):
        table.add_column(column, justify="right")
    for row in payload["results"]:
        if row["status"] == "ok":
            predicted = row.get("predicted_step_time_s")
            cells = [
                f"{row['step_time_s'] * 1e3:.2f} ± {row['step_time_std_s'] * 1e3:.2f}",
                f"{row['samples_per_s']:.1f}",
                "—" if predicted is None else f"{predicted * 1e3:.2f}",
                "ok",
            ]
        else:
            cells = ["—", "—", "—", str(row.get("error", "failed"))[:60]]
        table.add_row(*[str(row[c]) for c in columns], *cells)
    stdout_console.print(table)
    counts = (
        f"{payload['cells']} cells: {payload['measured']} measured now, "
        f"{payload['resumed']} resumed, {payload['failed']} failed"
    )
    stdout_console.print(counts)
    report = payload["report"]
    if report["markdown"]:
        stdout_console.print(f"report: {report['markdown']}")
        stdout_console.print(f"page:   {report['html']}")


@click.command("schemes")
@click.option(
    "--models",
    default="alexnet,vgg16,resnet50",
    show_default=True,
    help="Models, comma-separated.",
)
@click.option(
    "--batch-sizes",
    default="2,8",
    show_default=True,
    help="Samples per micro-batch (the nn_pipeline study's batch size); 1,2,4,8,16 as the study.",
)
@click.option(
    "--schemes",
    "scheme_names",
    default=None,
    help="Partitions to compare (default: every named scheme plus auto).",
)
@click.option("--stages", type=int, default=4, show_default=True, help="Pipeline stages.")
@click.option(
    "--microbatches",
    type=int,
    default=4,
    show_default=True,
    help="Micro-batches (batches) pipelined per training step.",
)
@_run_options(schedule="1f1b", steps=1)
def schemes(**options: Any) -> None:
    """Every layer-distribution scheme plus auto, per model and batch size."""
    from parnn.bench.studies.schemes import DEFAULT_SCHEMES, SchemesSettings, run_schemes_study
    from parnn.bench.studies.schemes_report import best_per_batch

    settings = SchemesSettings(
        models=parse_name_list(options["models"], "--models"),
        batch_sizes=parse_int_list(options["batch_sizes"], "--batch-sizes"),
        schemes=parse_name_list(options["scheme_names"], "--schemes")
        if options["scheme_names"]
        else DEFAULT_SCHEMES,
        num_ranks=options["stages"],
        num_microbatches=options["microbatches"],
        **_common(options),
    )
    out = options["out"] or Path("results") / "schemes"
    cluster = _check_cluster(options, out)
    check_out_dir(out, resumes=Resumes.RERUN)  # re-running resumes the study
    measure, predict = _engines(out, options["cache_dir"])
    outcome = run_schemes_study(
        settings,
        out,
        measure=measure,
        predict=predict,
        quiet=options["quiet"],
        cluster=cluster,
    )
    payload = outcome_payload(outcome)
    payload["best"] = [
        {
            "model": row["model"],
            "batch_size": row["batch_size"],
            "scheme": row["best"],
            "step_time_s": row["best_record"]["step_time_s"]["mean"],
            "samples_per_s": row["best_record"]["samples_per_s"]["mean"],
            "runner_up": row["runner_up"],
            "significant": row["significant"],
            "auto_rank": row["auto_rank"],
        }
        for row in best_per_batch(outcome.records)
    ]
    emit(
        payload,
        as_json=options["as_json"],
        render=lambda: _render(payload, ("model", "batch_size", "scheme"), "schemes"),
    )


@click.command("microbatches")
@click.option("--model", default="vgg16", show_default=True, help="Model to pipeline.")
@click.option(
    "--stages",
    default="4",
    show_default=True,
    help="Numbers of stages, comma-separated (1 shows micro-batching without overlap).",
)
@click.option(
    "--microbatches",
    default="1,2,4,8,16,32",
    show_default=True,
    help="Micro-batches per step, comma-separated; each must divide --batch-size.",
)
@click.option(
    "--batch-size",
    type=int,
    default=32,
    show_default=True,
    help="Samples per training step (128 in the GPipe study's VGG16 runs).",
)
@click.option(
    "--partition",
    default="auto",
    show_default=True,
    help="Scheme or balancer name (fwd-time is GPipe's), or boundaries 0,5,9,16.",
)
@click.option(
    "--repartition",
    is_flag=True,
    help="Choose a cost-aware partition again for every m (default: once, at the smallest m).",
)
@_run_options(schedule="gpipe")
def microbatches(**options: Any) -> None:
    """End-to-end, forward and backward times against the number of micro-batches."""
    from parnn.bench.studies.microbatches import MicrobatchesSettings, run_microbatches_study
    from parnn.bench.studies.microbatches_report import optimum

    settings = MicrobatchesSettings(
        model=options["model"],
        num_ranks=parse_int_list(options["stages"], "--stages"),
        microbatches=parse_int_list(options["microbatches"], "--microbatches"),
        batch_size=options["batch_size"],
        partition=options["partition"],
        repartition=options["repartition"],
        **_common(options),
    )
    out = options["out"] or Path("results") / "microbatches"
    cluster = _check_cluster(options, out)
    check_out_dir(out, resumes=Resumes.RERUN)  # re-running resumes the study
    measure, predict = _engines(out, options["cache_dir"])
    outcome = run_microbatches_study(
        settings,
        out,
        measure=measure,
        predict=predict,
        resolve=_resolver(out, options["cache_dir"]),
        quiet=options["quiet"],
        cluster=cluster,
    )
    payload = outcome_payload(outcome)
    payload["optimum"] = []
    ran = [r for r in outcome.records if r.get("status") == "ok"]
    for stages in dict.fromkeys(int(r["key"]["stages"]) for r in ran):
        mine = [r for r in ran if int(r["key"]["stages"]) == stages]
        best = optimum(mine)
        predicted = [r for r in mine if r.get("prediction")]
        guess = (
            min(predicted, key=lambda r: r["prediction"]["step_time_s"])
            if len(predicted) == len(mine)
            else None
        )
        payload["optimum"].append(
            {
                "stages": stages,
                "microbatches": best["key"]["microbatches"],
                "step_time_s": best["step_time_s"]["mean"],
                "predicted_microbatches": None if guess is None else guess["key"]["microbatches"],
            }
        )
    emit(
        payload,
        as_json=options["as_json"],
        render=lambda: _render(payload, ("stages", "microbatches"), "micro-batches"),
    )


@click.command("scaling")
@click.option("--model", default="vgg16", show_default=True, help="Model to pipeline.")
@click.option(
    "--stages",
    default="1,2,4",
    show_default=True,
    help="Numbers of stages, comma-separated; the smallest is the baseline.",
)
@click.option(
    "--batch-size", type=int, default=32, show_default=True, help="Samples per training step."
)
@click.option(
    "--microbatches",
    type=int,
    default=4,
    show_default=True,
    help="Micro-batches per step (the same for every number of stages).",
)
@click.option("--partition", default="auto", show_default=True, help="Scheme or balancer name.")
@_run_options(schedule="1f1b")
def scaling(**options: Any) -> None:
    """Speedup and efficiency against the number of stages, vs the ideal and the simulator."""
    from parnn.bench.studies.scaling import ScalingSettings, run_scaling_study
    from parnn.bench.studies.scaling_report import scaling_points

    settings = ScalingSettings(
        model=options["model"],
        num_ranks=parse_int_list(options["stages"], "--stages"),
        batch_size=options["batch_size"],
        num_microbatches=options["microbatches"],
        partition=options["partition"],
        **_common(options),
    )
    out = options["out"] or Path("results") / "scaling"
    cluster = _check_cluster(options, out)
    check_out_dir(out, resumes=Resumes.RERUN)  # re-running resumes the study
    measure, predict = _engines(out, options["cache_dir"])
    outcome = run_scaling_study(
        settings,
        out,
        measure=measure,
        predict=predict,
        quiet=options["quiet"],
        cluster=cluster,
    )
    payload = outcome_payload(outcome)
    machine = outcome.header.get("machine", {})
    points = scaling_points(
        outcome.records, cores=int(machine.get("usable_cores") or 1), threads=settings.threads
    )
    payload["scaling"] = [
        {
            "stages": p.stages,
            "speedup": p.speedup,
            "efficiency": p.efficiency,
            "ideal": p.ideal,
            "predicted_speedup": p.predicted_speedup,
        }
        for p in points
    ]
    emit(
        payload,
        as_json=options["as_json"],
        render=lambda: _render(payload, ("stages",), "scaling"),
    )


STUDY_COMMANDS = [schemes, microbatches, scaling]
