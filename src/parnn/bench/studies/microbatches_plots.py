"""The plots of the micro-batches study: end-to-end, forward and backward times against m
with the simulator's prediction beside each measured point and the optimum marked;
compute vs communication per stage; bytes and communication wait at every boundary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from parnn.bench.studies.formatting import (
    mean_s,
    predicted_s,
    stage_sum,
    stages_text,
    std_s,
    wait_s,
)
from parnn.bench.studies.plots import Mark, Panel, Series, save_panels, save_stage_bars

__all__ = ["draw_microbatch_plots"]

Record = Mapping[str, Any]


def _m(record: Record) -> int:
    return int(record["key"]["microbatches"])


def _predicted_sum(record: Record, name: str) -> float | None:
    prediction = record.get("prediction")
    return None if not prediction else float(sum(prediction[name]))


def draw_microbatch_plots(
    directory: Path, stages: int, records: Sequence[Record], model: str
) -> list[Path]:
    """Times vs m (optimum marked, simulator beside), per-stage bars, boundary bytes."""
    ms_values = [_m(r) for r in records]
    best = min(records, key=mean_s)
    times = Panel(
        "end-to-end time per step",
        "micro-batches per step (m)",
        "ms per step",
        [
            Series(
                "measured",
                ms_values,
                [mean_s(r) * 1e3 for r in records],
                errors=[std_s(r) * 1e3 for r in records],
            ),
            Series(
                "simulator",
                ms_values,
                [
                    None if predicted_s(r) is None else (predicted_s(r) or 0.0) * 1e3
                    for r in records
                ],
                style="predicted",
                color="C0",
            ),
        ],
        logx=True,
        xticks=ms_values,
        marks=[Mark(_m(best), mean_s(best) * 1e3, f"optimum m={_m(best)}")],
        ymin_zero=True,
    )
    phases = Panel(
        "forward and backward compute (all stages)",
        "micro-batches per step (m)",
        "ms per step",
        [
            Series(
                "forward",
                ms_values,
                [stage_sum(r, "forward_s") * 1e3 for r in records],
                color="C1",
            ),
            Series(
                "backward",
                ms_values,
                [stage_sum(r, "backward_s") * 1e3 for r in records],
                color="C2",
            ),
            Series(
                "forward (simulator)",
                ms_values,
                [_scaled(_predicted_sum(r, "stage_forward_s")) for r in records],
                style="predicted",
                color="C1",
            ),
            Series(
                "backward (simulator)",
                ms_values,
                [_scaled(_predicted_sum(r, "stage_backward_s")) for r in records],
                style="predicted",
                color="C2",
            ),
        ],
        logx=True,
        xticks=ms_values,
        ymin_zero=True,
    )
    title = f"{model}, {stages_text(stages)}"
    images = [
        save_panels(directory / f"microbatches-k{stages}-times.png", [times, phases], title=title)
    ]
    images.append(
        save_stage_bars(
            directory / f"microbatches-k{stages}-stages.png",
            [f"m={m}" for m in ms_values],
            [[s["forward_s"] + s["backward_s"] for s in r["stages"]] for r in records],
            [[wait_s(s) for s in r["stages"]] for r in records],
            title=f"{title}: compute vs communication per stage",
            xlabel="micro-batches per step",
        )
    )
    if stages > 1:
        boundary_series = [
            Series(
                f"stage {i} → {i + 1}",
                ms_values,
                [r["stages"][i]["boundary_bytes"] / 1024 for r in records],
                color=f"C{i}",
            )
            for i in range(stages - 1)
        ]
        wait_series = [
            Series(
                f"stage {i}",
                ms_values,
                [wait_s(r["stages"][i]) / _m(r) * 1e3 for r in records],
                color=f"C{i}",
            )
            for i in range(stages)
        ]
        images.append(
            save_panels(
                directory / f"microbatches-k{stages}-comm.png",
                [
                    Panel(
                        "tensor bytes per micro-batch at each boundary",
                        "m",
                        "KiB",
                        boundary_series,
                        logx=True,
                        logy=True,
                        xticks=ms_values,
                    ),
                    Panel(
                        "communication wait per micro-batch",
                        "m",
                        "ms",
                        wait_series,
                        logx=True,
                        xticks=ms_values,
                        ymin_zero=True,
                    ),
                ],
                title=title,
            )
        )
    return [Path(image.name) for image in images]


def _scaled(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3
