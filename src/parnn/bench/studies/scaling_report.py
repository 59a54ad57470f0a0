"""The report of the scaling study, built from its results directory alone.

Speedup ``T(k0) / T(k)`` and efficiency ``speedup / (k / k0)`` against the number of
stages, beside the ideal (linear) and the simulator, which assumes a core per stage; a
second simulator line caps it by the usable cores of the machine that ran the study
(``(compute + updates of all stages) / cores`` is a floor for the step time when stages
share cores).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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
    stages_text,
    std_s,
    wait_s,
)
from parnn.bench.studies.plots import Panel, Series, save_panels, save_stage_bars
from parnn.bench.studies.runs import ok_records

__all__ = ["ScalingPoint", "build_scaling_report", "scaling_points"]

Record = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ScalingPoint:
    """One number of stages against the baseline (the smallest number measured)."""

    stages: int
    record: Record
    ideal: float
    """k / k0."""
    speedup: float
    speedup_std: float
    """Propagated from the two times' standard deviations."""
    predicted_speedup: float | None
    capped_speedup: float | None
    """The simulator with the step time floored at total compute / usable cores."""

    @property
    def efficiency(self) -> float:
        return self.speedup / self.ideal

    @property
    def predicted_efficiency(self) -> float | None:
        return None if self.predicted_speedup is None else self.predicted_speedup / self.ideal


def _capped_s(record: Record, cores: int) -> float | None:
    prediction = record.get("prediction")
    if not prediction:
        return None
    # Everything the stages must compute in a step, updates included (not comm: waiting).
    compute = (
        sum(prediction["stage_forward_s"])
        + sum(prediction["stage_backward_s"])
        + sum(prediction.get("stage_update_s", ()))
    )
    stages = int(record["key"]["stages"])
    return max(float(prediction["step_time_s"]), compute / max(1, min(cores, stages)))


def scaling_points(
    records: Sequence[Record], *, cores: int, threads: int = 1
) -> list[ScalingPoint]:
    """Speedups of every finished cell against the smallest number of stages."""
    ran = sorted(ok_records(records), key=lambda r: int(r["key"]["stages"]))
    if not ran:
        return []
    base = ran[0]
    k0 = int(base["key"]["stages"])
    t0, s0 = mean_s(base), std_s(base)
    p0 = predicted_s(base)
    stage_cores = max(1, cores // max(1, threads))
    c0 = _capped_s(base, stage_cores)
    points = []
    for record in ran:
        k = int(record["key"]["stages"])
        t, s = mean_s(record), std_s(record)
        speedup = t0 / t
        p = predicted_s(record)
        c = _capped_s(record, stage_cores)
        points.append(
            ScalingPoint(
                stages=k,
                record=record,
                ideal=k / k0,
                speedup=speedup,
                speedup_std=speedup * math.hypot(s0 / t0, s / t),
                predicted_speedup=None if p is None or p0 is None or p <= 0 else p0 / p,
                capped_speedup=None if c is None or c0 is None or c <= 0 else c0 / c,
            )
        )
    return points


def _plot(data: StudyData, points: Sequence[ScalingPoint], cores: int, model: str) -> list[Path]:
    ks = [p.stages for p in points]
    vlines = [(float(cores), f"{cores} usable cores")] if cores < max(ks) else []
    speedup = Panel(
        "speedup",
        "stages",
        "speedup",
        [
            Series(
                "measured", ks, [p.speedup for p in points], errors=[p.speedup_std for p in points]
            ),
            Series("ideal", ks, [p.ideal for p in points], style="ideal"),
            Series(
                "simulator (a core per stage)",
                ks,
                [p.predicted_speedup for p in points],
                style="predicted",
                color="C0",
            ),
            Series(
                f"simulator ({cores} cores)",
                ks,
                [p.capped_speedup for p in points],
                style="predicted",
                color="C3",
            ),
        ],
        xticks=ks,
        vlines=vlines,
        ymin_zero=True,
    )
    efficiency = Panel(
        "efficiency",
        "stages",
        "speedup / ideal",
        [
            Series(
                "measured",
                ks,
                [p.efficiency for p in points],
                errors=[p.speedup_std / p.ideal for p in points],
            ),
            Series("ideal", ks, [1.0 for _ in points], style="ideal"),
            Series(
                "simulator (a core per stage)",
                ks,
                [p.predicted_efficiency for p in points],
                style="predicted",
                color="C0",
            ),
            Series(
                f"simulator ({cores} cores)",
                ks,
                [None if p.capped_speedup is None else p.capped_speedup / p.ideal for p in points],
                style="predicted",
                color="C3",
            ),
        ],
        xticks=ks,
        vlines=vlines,
        ymin_zero=True,
    )
    images = [
        save_panels(data.directory / "scaling.png", [speedup, efficiency], title=model),
        save_stage_bars(
            data.directory / "scaling-stages.png",
            [f"k={k}" for k in ks],
            [[s["forward_s"] + s["backward_s"] for s in p.record["stages"]] for p in points],
            [[wait_s(s) for s in p.record["stages"]] for p in points],
            title=f"{model}: compute vs communication per stage",
            xlabel="stages",
        ),
    ]
    return [Path(image.name) for image in images]


def _table(points: Sequence[ScalingPoint]) -> Table:
    rows = []
    for p in points:
        r = p.record
        rows.append(
            (
                str(p.stages),
                counts_text(r["partition"]["counts"]),
                ms_spread(r),
                f"{r['samples_per_s']['mean']:.1f}",
                f"{p.speedup:.2f} ± {p.speedup_std:.2f}",
                f"{p.ideal:.2f}",
                percent(p.efficiency),
                ms(predicted_s(r)),
                "—" if p.predicted_speedup is None else f"{p.predicted_speedup:.2f}",
                "—" if p.capped_speedup is None else f"{p.capped_speedup:.2f}",
                percent((r.get("prediction") or {}).get("bubble_fraction")),
                nbytes(max(s["peak_rss_bytes"] for s in r["stages"])),
            )
        )
    return Table(
        (
            "stages",
            "units per stage",
            "ms per step",
            "samples/s",
            "speedup",
            "ideal",
            "efficiency",
            "predicted ms",
            "predicted speedup",
            "predicted speedup (cores)",
            "predicted bubble",
            "peak RSS (largest stage)",
        ),
        rows,
        caption="speedup and efficiency against the smallest number of stages",
    )


def _conclusions(points: Sequence[ScalingPoint], cores: int) -> list[str]:
    if not points:
        return ["No cell finished successfully; see the failed cells below."]
    base = points[0]
    best = max(points, key=lambda p: p.speedup)
    if best is base:
        lines = [
            f"No speedup: {stages_text(base.stages)} was fastest ({ms(mean_s(base.record))} ms "
            "per step); every pipeline with more stages was slower."
        ]
    else:
        lines = [
            f"Fastest with {stages_text(best.stages)}: {ms(mean_s(best.record))} ms per step, "
            f"{best.speedup:.2f}x the {base.stages}-stage time "
            f"({percent(best.efficiency)} efficient)."
        ]
    for p in points[1:]:
        text = f"{p.stages} stages: {p.speedup:.2f}x ({percent(p.efficiency)} of ideal)"
        if p.predicted_speedup is not None:
            text += f"; the simulator predicted {p.predicted_speedup:.2f}x with a core per stage"
            bubble = (p.record.get("prediction") or {}).get("bubble_fraction")
            if bubble is not None:
                text += f" (bubble {percent(bubble)})"
        lines.append(text + ".")
    beyond = [p.stages for p in points if p.stages > cores]
    if beyond:
        lines.append(
            f"The machine had {cores} usable {'core' if cores == 1 else 'cores'}: with "
            f"{', '.join(map(str, beyond))} stages the processes shared cores, so no speedup "
            "beyond the core count is possible; the capped simulator line accounts for it."
        )
    return lines


def build_scaling_report(data: StudyData) -> Report:
    settings = data.settings
    records = list(data.records)
    machine = data.header.get("machine", {})
    cores = int(machine.get("usable_cores") or 1)
    model = str(settings.get("model", "model"))
    points = scaling_points(records, cores=cores, threads=int(settings.get("threads", 1)))
    sections = [
        Section(
            "Conclusions",
            paragraphs=[
                f"Question: how much faster does {model} train as its layers are spread over "
                "more pipeline stages (one process each), against the ideal and the simulator?",
                *_conclusions(points, cores),
            ],
        )
    ]
    if points:
        sections.append(
            Section(
                "Speedup and efficiency",
                tables=[_table(points)],
                images=_plot(data, points, cores, model),
            )
        )
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        sections.append(
            Section(
                "Failed cells",
                tables=[
                    Table(
                        ("stages", "error"),
                        [(str(r["key"]["stages"]), str(r.get("error", ""))) for r in failed],
                    )
                ],
            )
        )
    notes = [
        size_note(settings, records),
        f"Every step trains on {settings.get('batch_size')} samples in "
        f"{settings.get('num_microbatches')} micro-batches with the {settings.get('schedule')} "
        f"schedule and the {settings.get('partition')} partition, whatever the number of stages.",
    ]
    sections.append(settings_section(settings, notes))
    return Report(f"Pipeline scaling: {model}", sections)
