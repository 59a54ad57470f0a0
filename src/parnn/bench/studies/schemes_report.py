"""The report of the schemes study, built from its results directory alone.

Sections: the conclusions the data supports (fastest scheme per model and batch size,
whether the lead is larger than the spread, what ``auto`` gains, whether the simulator
ranks the schemes as measured), one section per model (plot of time per step vs batch size,
a line per scheme, and the table behind it), partition efficiency, failed cells, settings.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from parnn.bench.report import Report, Section, StudyData, Table
from parnn.bench.studies.formatting import (
    counts_text,
    mean_s,
    ms,
    ms_spread,
    percent,
    predicted_s,
    settings_section,
    size_note,
    std_s,
)
from parnn.bench.studies.plots import Panel, Series, save_panels
from parnn.bench.studies.runs import ok_records
from parnn.partition.cost import efficiency

__all__ = ["best_per_batch", "build_schemes_report"]

Record = Mapping[str, Any]


def _key(record: Record, name: str) -> Any:
    return record["key"][name]


def _ordered(values: Sequence[Any]) -> list[Any]:
    """Distinct values in first-seen order."""
    return list(dict.fromkeys(values))


def best_per_batch(records: Sequence[Record]) -> list[dict[str, Any]]:
    """For every (model, batch size): the fastest scheme, the runner-up, and auto.

    ``significant`` is False when the runner-up's mean lies within the best's mean plus
    the larger of the two standard deviations (the ranking is then inside the noise), and
    None when there is no runner-up or either cell kept fewer than two repeats.
    """
    rows: list[dict[str, Any]] = []
    ran = ok_records(records)
    for model in _ordered([_key(r, "model") for r in ran]):
        for batch in _ordered([_key(r, "batch_size") for r in ran if _key(r, "model") == model]):
            group = [r for r in ran if _key(r, "model") == model and _key(r, "batch_size") == batch]
            ranked = sorted(group, key=mean_s)
            best = ranked[0]
            # Schemes that cut the model where the fastest does are the same partition:
            # they share its rank, and the runner-up is the fastest *other* partition.
            same = [r for r in ranked[1:] if _boundaries(r) == _boundaries(best)]
            others = [r for r in ranked if _boundaries(r) != _boundaries(best)]
            runner = others[0] if others else None
            auto = next((r for r in group if _key(r, "scheme") == "auto"), None)
            equal = next((r for r in group if _key(r, "scheme") == "equal-load"), None)
            predicted = [r for r in group if predicted_s(r) is not None]
            predicted_best = (
                _key(min(predicted, key=lambda r: predicted_s(r) or 0.0), "scheme")
                if len(predicted) == len(group)
                else None
            )
            row: dict[str, Any] = {
                "model": model,
                "batch_size": batch,
                "best": _key(best, "scheme"),
                "same_partition": [_key(r, "scheme") for r in same],
                "best_record": best,
                "runner_up": None if runner is None else _key(runner, "scheme"),
                "margin": None if runner is None else mean_s(runner) / mean_s(best) - 1.0,
                "significant": _beyond_noise(best, runner),
                "auto_rank": None if auto is None else _rank(auto, group),
                "auto_vs_best": None if auto is None else mean_s(auto) / mean_s(best) - 1.0,
                "auto_vs_equal": None
                if auto is None or equal is None
                else 1.0 - mean_s(auto) / mean_s(equal),
                "auto_within_noise": None if auto is None else _within_noise(auto, best),
                "predicted_best": predicted_best,
                "predicted_best_same": predicted_best is not None
                and _boundaries(next(r for r in group if _key(r, "scheme") == predicted_best))
                == _boundaries(best),
                "num_partitions": len({_boundaries(r) for r in group}),
            }
            rows.append(row)
    return rows


def _boundaries(record: Record) -> tuple[int, ...]:
    return tuple(record["partition"]["boundaries"])


def _beyond_noise(best: Record, runner: Record | None) -> bool | None:
    """Whether ``runner`` is slower than ``best`` by more than either's spread; None when
    that cannot be judged (no runner-up, or a single kept repeat)."""
    if runner is None or min(best["step_time_s"]["kept"], runner["step_time_s"]["kept"]) < 2:
        return None
    return mean_s(runner) - mean_s(best) > max(std_s(runner), std_s(best))


def _within_noise(record: Record, best: Record) -> bool | None:
    """Whether ``record`` is within the larger spread of the fastest; None with one repeat."""
    if min(record["step_time_s"]["kept"], best["step_time_s"]["kept"]) < 2:
        return None
    return mean_s(record) - mean_s(best) <= max(std_s(record), std_s(best))


def _rank(record: Record, group: Sequence[Record]) -> int:
    """1 + the distinct partitions strictly faster than ``record``'s (ties rank alike)."""
    faster = {_boundaries(r) for r in group if mean_s(r) < mean_s(record)}
    return 1 + len(faster - {_boundaries(record)})


def _best_name(row: Mapping[str, Any]) -> str:
    """'equal-load (= middle-load, default)' when several schemes gave its partition."""
    same = row.get("same_partition") or []
    return row["best"] + (f" (= {', '.join(same)})" if same else "")


def _measured_balance(record: Record) -> float:
    """sum(compute) / (k max compute) over the measured per-stage forward + backward."""
    return efficiency([s["forward_s"] + s["backward_s"] for s in record["stages"]])


def _model_section(
    data: StudyData, model: str, records: Sequence[Record], schemes: Sequence[str]
) -> Section:
    batches = _ordered([_key(r, "batch_size") for r in records])
    by_cell = {(_key(r, "scheme"), _key(r, "batch_size")): r for r in records}
    fastest = {b: min(mean_s(r) for r in records if _key(r, "batch_size") == b) for b in batches}
    absolute, relative = [], []
    for scheme in schemes:
        points = [by_cell.get((scheme, b)) for b in batches]
        style = "highlight" if scheme == "auto" else "measured"
        absolute.append(
            Series(
                scheme,
                batches,
                [None if p is None else mean_s(p) * 1e3 for p in points],
                errors=[0.0 if p is None else std_s(p) * 1e3 for p in points],
                style=style,
            )
        )
        relative.append(
            Series(
                scheme,
                batches,
                [
                    None if p is None else mean_s(p) / fastest[b]
                    for p, b in zip(points, batches, strict=True)
                ],
                errors=[
                    0.0 if p is None else std_s(p) / fastest[b]
                    for p, b in zip(points, batches, strict=True)
                ],
                style=style,
            )
        )
    image = save_panels(
        data.directory / f"schemes-{_slug(model)}.png",
        [
            Panel(
                "time per step",
                "batch size (samples per micro-batch)",
                "ms per step",
                absolute,
                logx=True,
                logy=True,
                xticks=batches,
            ),
            Panel(
                "relative to the fastest scheme of each batch size",
                "batch size (samples per micro-batch)",
                "time / fastest",
                relative,
                logx=True,
                xticks=batches,
            ),
        ],
        title=f"{model}: time per step by scheme",
    )
    rows = []
    for scheme in schemes:
        counts = next(
            (counts_text(r["partition"]["counts"]) for r in records if _key(r, "scheme") == scheme),
            "—",
        )
        cells = [
            ms_spread(by_cell[(scheme, b)]) if (scheme, b) in by_cell else "—" for b in batches
        ]
        rows.append((scheme, counts, *cells))
    table = Table(
        ("scheme", "units per stage", *[f"b={b}" for b in batches]),
        rows,
        caption=f"{model}: ms per step, mean ± std of the kept repeats (kept/measured)",
    )
    throughput = Table(
        ("scheme", *[f"b={b}" for b in batches]),
        [
            (
                scheme,
                *[
                    f"{by_cell[(scheme, b)]['samples_per_s']['mean']:.1f}"
                    if (scheme, b) in by_cell
                    else "—"
                    for b in batches
                ],
            )
            for scheme in schemes
        ],
        caption=f"{model}: samples per second",
    )
    return Section(model, tables=[table, throughput], images=[Path(image.name)])


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _efficiency_gains(records: Sequence[Record]) -> list[str]:
    """Per model: the partition efficiency auto reaches against equal-load and the best
    named scheme, predicted (with communication) and measured (compute balance)."""
    lines = []
    ran = ok_records(records)
    for model in _ordered([_key(r, "model") for r in ran]):
        mine = [r for r in ran if _key(r, "model") == model]
        by_scheme: dict[str, list[Record]] = {}
        for record in mine:
            by_scheme.setdefault(_key(record, "scheme"), []).append(record)
        if "auto" not in by_scheme or len(by_scheme) < 2:
            continue
        parts = []
        for label, value in (
            ("predicted with communication", _predicted_efficiency),
            ("measured compute balance", _measured_balance),
        ):
            means = {}
            for scheme, chosen in by_scheme.items():
                values = [v for v in (value(r) for r in chosen) if v is not None]
                if values:
                    means[scheme] = statistics.fmean(values)
            if "auto" not in means or len(means) < 2:
                continue
            others = {k: v for k, v in means.items() if k != "auto"}
            best = max(others, key=lambda k: others[k])
            text = (
                f"{label} {percent(means['auto'])} vs {percent(others[best])} for the best "
                f"other ({best})"
            )
            if "equal-load" in others and best != "equal-load":
                text += f" and {percent(others['equal-load'])} for equal-load"
            parts.append(text)
        if parts:
            lines.append(f"{model}: auto's partition efficiency: " + "; ".join(parts) + ".")
    return lines


def _predicted_efficiency(record: Record) -> float | None:
    prediction = record.get("prediction")
    return None if not prediction else float(prediction["efficiency"])


def _conclusions(rows: Sequence[Mapping[str, Any]], records: Sequence[Record]) -> list[str]:
    if not rows:
        return ["No cell finished successfully; see the failed cells below."]
    lines = []
    for model in _ordered([r["model"] for r in rows]):
        mine = [r for r in rows if r["model"] == model]
        winners = _ordered([_best_name(r) for r in mine])
        parts = []
        for scheme in winners:
            sizes = [str(r["batch_size"]) for r in mine if _best_name(r) == scheme]
            parts.append(f"{scheme} at batch size {', '.join(sizes)}")
        lines.append(f"{model}: fastest was " + "; ".join(parts) + ".")
    noisy = [r for r in rows if r["significant"] is False]
    unjudged = [r for r in rows if r["runner_up"] is not None and r["significant"] is None]
    if unjudged:
        lines.append(
            f"In {len(unjudged)} of {len(rows)} pairs a cell kept a single repeat, so whether "
            "the fastest beats the runner-up by more than the noise cannot be judged: run "
            "with --repeats 3 or more."
        )
    if noisy:
        lines.append(
            f"In {len(noisy)} of {len(rows)} (model, batch size) pairs the runner-up (the "
            "fastest other partition) is within one standard deviation of the fastest: those "
            "rankings are inside the noise."
        )
    with_auto = [r for r in rows if r["auto_rank"] is not None]
    if with_auto:
        first = sum(1 for r in with_auto if r["auto_rank"] == 1)
        judged = [r for r in with_auto if r["auto_within_noise"] is not None]
        close = sum(1 for r in judged if r["auto_within_noise"])
        gap = statistics.fmean(r["auto_vs_best"] for r in with_auto)
        text = f"auto was the fastest in {first} of {len(with_auto)} pairs"
        if judged:
            text += f" and within one standard deviation of the fastest in {close} of {len(judged)}"
        text += (
            f"; on average it took {percent(gap)} longer per step than the fastest scheme of "
            "its pair"
        )
        versus_equal = [r["auto_vs_equal"] for r in with_auto if r["auto_vs_equal"] is not None]
        if versus_equal:
            text += (
                f", and saved {percent(statistics.fmean(versus_equal))} of equal-load's time "
                "per step"
            )
        lines.append(text + ".")
    judged = [r for r in rows if r["predicted_best"] is not None]
    if judged:
        agree = sum(1 for r in judged if r["predicted_best_same"])
        errors = [
            abs((predicted_s(r) or 0.0) - mean_s(r)) / mean_s(r)
            for r in ok_records(records)
            if predicted_s(r) is not None
        ]
        lines.append(
            f"The simulator picked the measured fastest scheme in {agree} of {len(judged)} "
            f"pairs; its step time was off by {percent(statistics.median(errors))} "
            "(median |predicted - measured| / measured)."
        )
    return lines


def _best_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    body = []
    for row in rows:
        best = row["best_record"]
        body.append(
            (
                row["model"],
                str(row["batch_size"]),
                _best_name(row),
                ms_spread(best),
                f"{best['samples_per_s']['mean']:.1f}",
                row["runner_up"] or "—",
                percent(row["margin"]),
                {True: "yes", False: "no", None: "—"}[row["significant"]],
                "—"
                if row["auto_rank"] is None
                else f"{row['auto_rank']} of {row['num_partitions']}",
                percent(row["auto_vs_best"]),
                row["predicted_best"] or "—",
            )
        )
    return Table(
        (
            "model",
            "batch size",
            "fastest",
            "ms per step",
            "samples/s",
            "runner-up",
            "runner-up slower by",
            "beyond noise",
            "auto's rank (distinct partitions)",
            "auto slower by",
            "simulator's pick",
        ),
        body,
        caption="fastest scheme per model and batch size",
    )


def _efficiency_table(model: str, records: Sequence[Record], schemes: Sequence[str]) -> Table:
    rows = []
    for scheme in schemes:
        mine = [r for r in records if _key(r, "scheme") == scheme]
        if not mine:
            continue
        predicted = [r["prediction"] for r in mine if r.get("prediction")]
        rows.append(
            (
                scheme,
                percent(statistics.fmean(_measured_balance(r) for r in mine)),
                percent(statistics.fmean(p["efficiency"] for p in predicted)) if predicted else "—",
                percent(statistics.fmean(p["efficiency_without_comm"] for p in predicted))
                if predicted
                else "—",
                ms(statistics.fmean(predicted_s(r) or 0.0 for r in mine)) if predicted else "—",
                ms(statistics.fmean(mean_s(r) for r in mine)),
            )
        )
    return Table(
        (
            "scheme",
            "measured compute balance",
            "predicted efficiency (with comm)",
            "predicted efficiency (compute only)",
            "predicted ms per step (mean over b)",
            "measured ms per step (mean over b)",
        ),
        rows,
        caption=f"{model}: partition efficiency = sum(stage cost) / (k x slowest stage), "
        "averaged over batch sizes",
    )


def build_schemes_report(data: StudyData) -> Report:
    settings = data.settings
    records = list(data.records)
    ran = ok_records(records)
    schemes = list(settings.get("schemes", _ordered([_key(r, "scheme") for r in records])))
    rows = best_per_batch(records)
    sections = [
        Section(
            "Conclusions",
            paragraphs=[
                "Question: which distribution of layers over the pipeline stages trains "
                "fastest, per model and batch size, and does the cost-aware auto partition "
                "find it (the nn_pipeline study)?",
                *_conclusions(rows, records),
                *_efficiency_gains(records),
            ],
            tables=[_best_table(rows)] if rows else [],
        )
    ]
    efficiency_tables = []
    for model in _ordered([_key(r, "model") for r in ran]):
        mine = [r for r in ran if _key(r, "model") == model]
        sections.append(_model_section(data, model, mine, schemes))
        efficiency_tables.append(_efficiency_table(model, mine, schemes))
    if efficiency_tables:
        sections.append(
            Section(
                "Partition efficiency",
                paragraphs=[
                    "Measured compute balance uses each stage's measured forward + backward "
                    "time; the predicted efficiencies come from the per-unit profile and the "
                    "communication model (parnn.partition)."
                ],
                tables=efficiency_tables,
            )
        )
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        sections.append(
            Section(
                "Failed cells",
                paragraphs=[
                    "These cells did not run; they are recorded and not retried (use another "
                    "--out to measure them again)."
                ],
                tables=[
                    Table(
                        ("model", "batch size", "scheme", "error"),
                        [
                            (
                                str(_key(r, "model")),
                                str(_key(r, "batch_size")),
                                str(_key(r, "scheme")),
                                str(r.get("error", "")),
                            )
                            for r in failed
                        ],
                    )
                ],
            )
        )
    notes = [
        size_note(settings, records),
        f"A cell's batch size is the size of each micro-batch; a step pipelines "
        f"{settings.get('num_microbatches')} of them over {settings.get('num_ranks')} stages "
        f"with the {settings.get('schedule')} schedule.",
    ]
    sections.append(settings_section(settings, notes))
    return Report("Layer distribution schemes (nn_pipeline study)", sections)
