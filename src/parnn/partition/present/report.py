"""Tables of profiles, partitions and simulations: one JSON-ready dict each, and the rich
tables the command line draws from those dicts (never from anything else)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from parnn.progress import stdout_console

__all__ = [
    "format_bytes",
    "methods_report",
    "parse_bytes",
    "plan_report",
    "render_methods",
    "render_partition",
    "render_profile",
    "render_simulation",
    "unprofiled_report",
]

_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
}


def parse_bytes(text: str) -> int:
    """'512MiB' -> 536870912; '2GB' -> 2e9; '1.5g' -> 1.5 GiB; '4096' -> 4096 bytes."""
    from parnn.errors import ConfigError

    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("bkmgi")
    suffix = cleaned[len(number) :]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if suffix not in _BYTE_UNITS or value <= 0:
        raise ConfigError(
            f"bad memory size {text!r}: give a positive number with an optional unit "
            "B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), e.g. 512MiB"
        )
    return int(value * _BYTE_UNITS[suffix])


def format_bytes(num_bytes: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(num_bytes) >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes:.0f} B"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _names(names: Sequence[str]) -> str:
    if len(names) <= 2:
        return ", ".join(names)
    return f"{names[0]} .. {names[-1]}"


def render_profile(payload: Mapping[str, Any]) -> None:
    """The per-unit table of `parnn profile`."""
    shape = "x".join(str(s) for s in payload["input_shape"])
    table = Table(
        title=f"{payload['model']} {shape}, batch {payload['batch_size']}, "
        f"{payload['threads']} thread(s): median of {payload['repeats']} passes"
    )
    for column in (
        "#",
        "unit",
        "fwd ms",
        "bwd ms",
        "update ms",
        "activation KB",
        "saved KB",
        "params",
    ):
        table.add_column(column, justify="left" if column == "unit" else "right")
    for index, unit in enumerate(payload["units"]):
        table.add_row(
            str(index),
            unit["name"],
            _ms(unit["forward_s"]),
            _ms(unit["backward_s"]),
            _ms(unit["update_s"]),
            f"{unit['activation_bytes'] / 1e3:.1f}",
            f"{unit['saved_bytes'] / 1e3:.1f}",
            f"{unit['num_parameters']:,}",
        )
    totals = payload["totals"]
    table.add_row(
        "",
        "total",
        _ms(totals["forward_s"]),
        _ms(totals["backward_s"]),
        _ms(totals["update_s"]),
        "",
        f"{totals['saved_bytes'] / 1e3:.1f}",
        f"{totals['num_parameters']:,}",
        style="bold",
    )
    stdout_console.print(table)
    comm = payload.get("comm")
    if comm is not None:
        stdout_console.print(
            f"communication ({comm['backend']}): {comm['latency_s'] * 1e6:.1f} us + bytes / "
            f"{comm['bandwidth_bytes_per_s'] / 1e9:.2f} GB/s"
        )
    if payload.get("file"):
        stdout_console.print(f"profile written to {payload['file']}")


def render_partition(payload: Mapping[str, Any]) -> None:
    """The per-stage table of `parnn partition` (and of `parnn simulate`)."""
    costs = payload.get("stages")
    title = (
        f"{payload['model']}: {payload['method']} over {payload['num_stages']} stages "
        f"({payload['partition']})"
        + ("; times in ms per micro-batch" if payload.get("costed", True) else "")
    )
    table = Table(title=title)
    columns = ["stage", "units", "layers", "params"]
    if payload.get("costed", True):
        columns += ["fwd", "bwd", "comm", "total", "memory"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("units", "layers") else "right")
    for stage in costs or []:
        row = [
            str(stage["stage"]),
            f"{stage['start']}-{stage['stop'] - 1}",
            _names(stage["unit_names"]),
            f"{stage['num_parameters']:,}",
        ]
        if payload.get("costed", True):
            bottleneck = stage["stage"] == payload.get("bottleneck_stage")
            row += [
                _ms(stage["forward_s"]),
                _ms(stage["backward_s"]),
                _ms(stage["comm_s"]),
                ("[bold]" if bottleneck else "") + _ms(stage["total_s"]),
                format_bytes(stage["memory_bytes"]),
            ]
        table.add_row(*row)
    stdout_console.print(table)
    if not payload.get("costed", True):
        return
    stdout_console.print(
        f"per micro-batch of {payload['microbatch_size']}: bottleneck "
        f"{_ms(payload['bottleneck_s'])} ms (stage {payload['bottleneck_stage']}); "
        f"efficiency {payload['efficiency']:.1%} with communication, "
        f"{payload['efficiency_without_comm']:.1%} without"
    )
    predicted = payload.get("predicted")
    if predicted:
        stdout_console.print(
            f"predicted step ({payload['schedule']}, m={payload['num_microbatches']}): "
            f"{_ms(predicted['step_time_s'])} ms, bubble {predicted['bubble_fraction']:.1%}, "
            f"{predicted['samples_per_s']:.1f} samples/s"
        )
    candidates = payload.get("microbatch_candidates")
    if candidates and len(candidates) > 1:
        render_candidates(candidates, chosen=payload["num_microbatches"])


def render_candidates(candidates: Sequence[Mapping[str, Any]], *, chosen: int) -> None:
    table = Table(title="--microbatches auto: predicted step per m")
    for column in ("m", "micro-batch", "partition", "step ms", "bubble", "efficiency"):
        table.add_column(column, justify="right")
    for item in candidates:
        mark = " *" if item["num_microbatches"] == chosen else ""
        table.add_row(
            f"{item['num_microbatches']}{mark}",
            str(item["microbatch_size"]),
            ",".join(str(b) for b in item["boundaries"]),
            _ms(item["step_time_s"]),
            f"{item['bubble_fraction']:.1%}",
            f"{item['efficiency']:.1%}",
        )
    stdout_console.print(table)


def render_methods(payload: Mapping[str, Any]) -> None:
    """The comparison table of `parnn partition --method all`."""
    table = Table(
        title=f"{payload['model']}: every method over {payload['num_stages']} stages "
        f"(micro-batch {payload['microbatch_size']}, {payload['schedule']}, "
        f"m={payload['num_microbatches']})"
    )
    for column in (
        "method",
        "partition",
        "bottleneck ms",
        "eff. (comm)",
        "eff. (no comm)",
        "step ms",
        "max memory",
    ):
        table.add_column(column, justify="left" if column in ("method", "partition") else "right")
    for row in payload["methods"]:
        best = row["method"] == payload["best_method"]
        table.add_row(
            ("[bold]" if best else "") + row["method"],
            row["partition"],
            _ms(row["bottleneck_s"]),
            f"{row['efficiency']:.1%}",
            f"{row['efficiency_without_comm']:.1%}",
            _ms(row["step_time_s"]),
            format_bytes(row["max_memory_bytes"]),
        )
    stdout_console.print(table)


def render_simulation(payload: Mapping[str, Any]) -> None:
    """The per-rank prediction table of `parnn simulate`."""
    render_partition(payload)
    simulation = payload["simulation"]
    closed = payload["closed_form_bubble"]  # None: no closed form (a split backward)
    table = Table(
        title=f"simulated {simulation['schedule']} step, m={simulation['num_microbatches']}: "
        f"{_ms(simulation['step_time_s'])} ms, bubble {simulation['bubble_fraction']:.1%}"
        + ("" if closed is None else f" (closed form for equal stages {closed:.1%})")
    )
    for column in (
        "rank",
        "busy ms",
        "compute ms",
        "comm ms",
        "update ms",
        "idle ms",
        "bubble",
        "peak in flight",
        "peak activations",
    ):
        table.add_column(column, justify="right")
    for rank in simulation["ranks"]:
        table.add_row(
            str(rank["rank"]),
            _ms(rank["busy_s"]),
            _ms(rank["compute_s"]),
            _ms(rank["comm_s"]),
            _ms(rank["update_s"]),
            _ms(rank["idle_s"]),
            f"{rank['bubble_fraction']:.1%}",
            str(rank["peak_in_flight"]),
            format_bytes(rank["peak_activation_bytes"]),
        )
    stdout_console.print(table)
    if payload.get("grid"):
        stdout_console.print(payload["grid"], markup=False, highlight=False)
    for kind, path in (payload.get("files") or {}).items():
        stdout_console.print(f"{kind}: {path}")


def plan_report(plan: Any, *, command: str, model: str, profile: Any) -> dict[str, Any]:
    """The JSON-ready report of a :class:`~parnn.partition.plan.PipelinePlan`: the chosen
    partition, its per-stage costs, the predicted step and every micro-batch candidate.
    ``profile`` is the profile the plan was priced with (its input shape and comm model)."""
    from parnn.partition.simulate import schedule_bubble

    chosen = plan.chosen
    num_stages = chosen.partition.num_stages
    return {
        "command": command,
        "model": model,
        "input_shape": list(profile.input_shape),
        "batch_size": plan.batch_size,
        "num_stages": num_stages,
        "num_ranks": plan.num_ranks,
        "schedule": plan.schedule,
        "method": plan.method,
        "partition": str(chosen.partition),
        "num_microbatches": chosen.num_microbatches,
        "costed": True,
        **chosen.cost.to_dict(),
        "predicted": {
            "step_time_s": chosen.step_time_s,
            "bubble_fraction": chosen.simulation.bubble_fraction,
            "closed_form_bubble": schedule_bubble(
                plan.schedule,
                plan.num_ranks,
                chosen.num_microbatches,
                num_stages // plan.num_ranks,
            ),
            "samples_per_s": plan.samples_per_s,
        },
        "microbatch_candidates": [c.to_dict() for c in plan.candidates],
        "skipped_microbatches": [{"num_microbatches": m, "reason": r} for m, r in plan.skipped],
        "comm": None if profile.comm is None else profile.comm.to_dict(),
    }


_METHOD_ROW_KEYS = (
    "method",
    "partition",
    "boundaries",
    "num_microbatches",
    "microbatch_size",
    "bottleneck_s",
    "efficiency",
    "efficiency_without_comm",
    "max_memory_bytes",
)
_SHARED_KEYS: tuple[str, ...] = (
    *("command", "model", "input_shape", "batch_size", "num_stages", "num_ranks"),
    *("schedule", "microbatch_size", "num_microbatches", "comm"),
)


def methods_report(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One report comparing the :func:`plan_report` of each method: a row per method and
    the best (the fastest predicted step; ``auto`` wins a tie)."""
    rows = [
        {key: report[key] for key in _METHOD_ROW_KEYS}
        | {"step_time_s": report["predicted"]["step_time_s"]}
        for report in reports
    ]
    best = min(rows, key=lambda row: (row["step_time_s"], row["method"] != "auto"))
    shared = {key: reports[-1][key] for key in _SHARED_KEYS}
    return shared | {"method": "all", "methods": rows, "best_method": best["method"]}


def unprofiled_report(
    model: str,
    method: str,
    *,
    num_stages: int,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """The stage table of a profile-free method (a scheme, uniform, explicit boundaries):
    each stage's units and parameters, no costs; the model is built on the meta device."""
    import torch

    from parnn.models import build_model, count_parameters
    from parnn.partition.methods import partition_for

    with torch.device("meta"):
        built = build_model(model, input_shape=input_shape, num_classes=num_classes)
    units = list(built.named_children())
    chosen = partition_for(method, num_stages=num_stages, num_units=len(units))
    stages = [
        {
            "stage": index,
            "start": span.start,
            "stop": span.stop,
            "num_units": len(span),
            "unit_names": [units[u][0] for u in span],
            "num_parameters": sum(count_parameters(units[u][1]) for u in span),
        }
        for index, span in enumerate(chosen.stage_ranges)
    ]
    return {
        "command": "partition",
        "model": model,
        "num_stages": num_stages,
        "method": method,
        "partition": str(chosen),
        "boundaries": list(chosen.boundaries),
        "counts": list(chosen.counts),
        "costed": False,
        "stages": stages,
    }
