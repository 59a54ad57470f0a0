"""The report of the micro-batches study, built from its results directory alone.

Per number of stages: end-to-end, forward and backward times against ``m`` with the
simulator's prediction beside every measured point and the optimum ``m`` marked; per-stage
compute vs communication; the bytes at every boundary; and the GPipe study's partition
efficiency tables (sum of stage costs over k x the slowest), measured with and without
communication and predicted by the cost model.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from parnn.bench.report import Report, Section, StudyData, Table
from parnn.bench.studies.formatting import (
    counts_text,
    mean_s,
    ms,
    ms_spread,
    nbytes,
    percent,
    predicted_s,
    settings_section,
    size_note,
    stage_sum,
    stages_text,
    wait_s,
)
from parnn.bench.studies.microbatches_plots import draw_microbatch_plots
from parnn.bench.studies.runs import ok_records
from parnn.partition.cost import efficiency

__all__ = ["build_microbatches_report", "optimum"]

Record = Mapping[str, Any]


def _m(record: Record) -> int:
    return int(record["key"]["microbatches"])


def optimum(records: Sequence[Record]) -> Record:
    """The record with the fastest step (the optimum m)."""
    return min(records, key=mean_s)


def _shape_sentence(records: Sequence[Record]) -> str:
    best = optimum(records)
    first, last = records[0], records[-1]
    if best is first:
        return (
            f"time per step was lowest at the smallest m ({_m(first)}: {ms(mean_s(first))} ms) "
            f"and reached {ms(mean_s(last))} ms at m={_m(last)}: splitting the mini-batch "
            "cost more than the overlap it bought"
        )
    if best is last:
        return (
            f"time per step fell with every m, from {ms(mean_s(first))} ms at m={_m(first)} to "
            f"{ms(mean_s(last))} ms at m={_m(last)}: the optimum may lie beyond the largest m "
            "tried"
        )
    return (
        f"time per step fell from {ms(mean_s(first))} ms at m={_m(first)} to "
        f"{ms(mean_s(best))} ms at m={_m(best)}, then rose to {ms(mean_s(last))} ms at "
        f"m={_m(last)}: past the optimum, smaller micro-batches cost more than the bubble "
        "they remove (the GPipe study's finding)"
    )


def _conclusions(stages: int, records: Sequence[Record]) -> list[str]:
    best = optimum(records)
    lines = [
        f"{stages_text(stages)}: optimum m = {_m(best)} ({ms_spread(best)} ms per step, "
        f"{best['samples_per_s']['mean']:.1f} samples/s); " + _shape_sentence(records) + "."
    ]
    predicted = [r for r in records if predicted_s(r) is not None]
    if len(predicted) == len(records):
        guess = min(predicted, key=lambda r: predicted_s(r) or 0.0)
        errors = [abs((predicted_s(r) or 0.0) - mean_s(r)) / mean_s(r) for r in predicted]
        lines.append(
            f"The simulator put the optimum at m = {_m(guess)}; its step times were off by "
            f"{percent(statistics.median(errors))} (median |predicted - measured| / measured)."
        )
    first, last = records[0], records[-1]
    if first is not last:
        work_first = stage_sum(first, "forward_s") + stage_sum(first, "backward_s")
        work_last = stage_sum(last, "forward_s") + stage_sum(last, "backward_s")
        if work_first > 0:
            lines.append(
                f"Compute per step summed over the stages went from {ms(work_first)} ms at "
                f"m={_m(first)} to {ms(work_last)} ms at m={_m(last)} "
                f"({percent(work_last / work_first - 1.0)} change): the same samples cost "
                "more in smaller pieces."
            )
        same = [
            r for r in records if r["partition"]["boundaries"] == first["partition"]["boundaries"]
        ]
        if stages > 1 and len(same) > 1:
            low, high = same[0], same[-1]
            bytes_low = low["stages"][0]["boundary_bytes"]
            bytes_high = high["stages"][0]["boundary_bytes"]
            lines.append(
                f"With the same cut, the first boundary carried {nbytes(bytes_low)} per "
                f"micro-batch at m={_m(low)} and {nbytes(bytes_high)} at m={_m(high)}: tensor "
                "bytes scale with the micro-batch size, so a step moves the same bytes "
                f"({nbytes(bytes_high * _m(high))} forward) whatever m."
            )
        cuts = list(dict.fromkeys(counts_text(r["partition"]["counts"]) for r in records))
        if len(cuts) > 1:
            lines.append(
                f"The {records[0]['spec']['partition']} partition changed with m (it is chosen "
                f"for each micro-batch size): {', '.join(cuts)}; compare cells with the same "
                "cut when judging m alone, or pass explicit boundaries with --partition."
            )
    return lines


def _main_table(records: Sequence[Record], batch_size: int) -> Table:
    rows = []
    for r in records:
        predicted = predicted_s(r)
        prediction = r.get("prediction") or {}
        rows.append(
            (
                str(_m(r)),
                str(batch_size // _m(r)),
                counts_text(r["partition"]["counts"]),
                ms_spread(r),
                ms(predicted),
                "—" if predicted is None else percent(predicted / mean_s(r) - 1.0),
                f"{r['samples_per_s']['mean']:.1f}",
                ms(stage_sum(r, "forward_s")),
                ms(stage_sum(r, "backward_s")),
                ms(sum(wait_s(s) for s in r["stages"])),
                percent(prediction.get("bubble_fraction")),
            )
        )
    return Table(
        (
            "m",
            "micro-batch",
            "units per stage",
            "ms per step",
            "predicted ms",
            "prediction error",
            "samples/s",
            "forward ms (all stages)",
            "backward ms (all stages)",
            "comm wait ms (all stages)",
            "predicted bubble",
        ),
        rows,
        caption="measured per step (mean ± std (kept/measured)) beside the simulator",
    )


def _per_stage_table(records: Sequence[Record]) -> Table:
    num = len(records[0]["stages"])
    rows = []
    for stage in range(num):
        cells = []
        for r in records:
            s = r["stages"][stage] if stage < len(r["stages"]) else None
            cells.append(
                "—" if s is None else f"{ms(s['forward_s'] + s['backward_s'])} / {ms(wait_s(s))}"
            )
        rows.append((f"stage {stage}", *cells))
    return Table(
        ("stage", *[f"m={_m(r)}" for r in records]),
        rows,
        caption="compute / communication wait, ms per step",
    )


def _bytes_table(records: Sequence[Record]) -> Table:
    num = len(records[0]["stages"])
    rows = []
    for stage in range(num - 1):
        rows.append(
            (
                f"stage {stage} → {stage + 1}",
                *[nbytes(r["stages"][stage]["boundary_bytes"]) for r in records],
            )
        )
    rows.append(
        (
            "per step, all boundaries",
            *[nbytes(_m(r) * sum(s["boundary_bytes"] for s in r["stages"][:-1])) for r in records],
        )
    )
    return Table(
        ("boundary", *[f"m={_m(r)}" for r in records]),
        rows,
        caption="activation bytes sent forward per micro-batch (the gradient back is as large)",
    )


def _efficiency_tables(records: Sequence[Record]) -> list[Table]:
    num = len(records[0]["stages"])
    header = ("", *[f"m={_m(r)}" for r in records])
    tables = []
    for with_comm in (False, True):
        costs = [
            [
                (s["forward_s"] + s["backward_s"] + (wait_s(s) if with_comm else 0.0)) / _m(r)
                for s in r["stages"]
            ]
            for r in records
        ]
        rows = [(f"stage {i}", *[ms(c[i]) for c in costs]) for i in range(num)]
        rows.append(("mean", *[ms(statistics.fmean(c)) for c in costs]))
        rows.append(("efficiency", *[percent(efficiency(c)) for c in costs]))
        what = "compute + communication wait" if with_comm else "compute only"
        tables.append(
            Table(header, rows, caption=f"measured, {what}: ms per micro-batch per stage")
        )
    if all(r.get("prediction") for r in records):
        tables.append(
            Table(
                header,
                [
                    (
                        "without comm",
                        *[percent(r["prediction"]["efficiency_without_comm"]) for r in records],
                    ),
                    ("with comm", *[percent(r["prediction"]["efficiency"]) for r in records]),
                ],
                caption="predicted partition efficiency (profile + communication model)",
            )
        )
    return tables


def build_microbatches_report(data: StudyData) -> Report:
    settings = data.settings
    records = list(data.records)
    ran = ok_records(records)
    model = str(settings.get("model", "model"))
    batch_size = int(settings.get("batch_size", 0))
    stage_counts = list(dict.fromkeys(int(r["key"]["stages"]) for r in ran))
    conclusions = [
        "Question: how does splitting each mini-batch into m micro-batches change the time "
        f"per step of {model}, where is the optimum m, and does the simulator predict it (the "
        "GPipe study)?"
    ]
    sections: list[Section] = []
    for stages in stage_counts:
        mine = sorted((r for r in ran if int(r["key"]["stages"]) == stages), key=_m)
        conclusions += _conclusions(stages, mine)
        images = draw_microbatch_plots(data.directory, stages, mine, model)
        sections.append(
            Section(
                f"{stages_text(stages)}: times",
                tables=[_main_table(mine, batch_size)],
                images=images[:1],
            )
        )
        sections.append(
            Section(
                f"{stages_text(stages)}: compute, communication and boundary bytes",
                paragraphs=[
                    "Communication wait is the time a stage was blocked sending or receiving: "
                    "the transfer itself plus waiting for its neighbour (the pipeline bubble)."
                ],
                tables=[_per_stage_table(mine), *([_bytes_table(mine)] if stages > 1 else [])],
                images=images[1:],
            )
        )
        if stages > 1:
            sections.append(
                Section(
                    f"{stages_text(stages)}: partition efficiency",
                    paragraphs=[
                        "Partition efficiency = sum of the stage costs / (k x the slowest "
                        "stage), the GPipe study's measure; 100 % is a perfect balance."
                    ],
                    tables=_efficiency_tables(mine),
                )
            )
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        sections.append(
            Section(
                "Failed cells",
                tables=[
                    Table(
                        ("stages", "m", "error"),
                        [
                            (
                                str(r["key"]["stages"]),
                                str(r["key"]["microbatches"]),
                                str(r.get("error", "")),
                            )
                            for r in failed
                        ],
                    )
                ],
            )
        )
    if not ran:
        conclusions.append("No cell finished successfully; see the failed cells below.")
    notes = [
        size_note(settings, records),
        f"Every step trains on a mini-batch of {batch_size} samples, split into m equal "
        f"micro-batches, with the {settings.get('schedule')} schedule; the partition is "
        f"{settings.get('partition')!s}"
        + (
            " (chosen again for every m)."
            if settings.get("repartition")
            else " (a cost-aware one is chosen once per number of stages, at the smallest m)."
        ),
    ]
    sections.append(settings_section(settings, notes))
    return Report(
        f"Micro-batches per step (GPipe study): {model}",
        [Section("Conclusions", paragraphs=conclusions), *sections],
    )
