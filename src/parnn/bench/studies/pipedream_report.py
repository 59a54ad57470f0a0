"""What the PipeDream study shows (``parnn study pipedream``): its JSON object assembled from
the cells of its store (:func:`pipedream_payload`: the prediction, throughput and accuracy
parts), and its report with the accuracy-against-time plot (``parnn report DIR``), both from
the store alone.

The study itself (its cells and how each is measured) is
:mod:`parnn.bench.studies.pipedream`; this module knows nothing of it.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from parnn.bench.report import Report, Section, StudyData, Table
from parnn.bench.stats import summarize

__all__ = [
    "DEFAULT_MICROBATCHES",
    "KIND",
    "PLOT_FILE",
    "SCHEDULES",
    "SIDES",
    "build_pipedream_report",
    "key_microbatches",
    "pipedream_payload",
]

KIND = "pipedream"
"""The study kind of its store (``study.json``)."""
SCHEDULES = ("gpipe", "1f1b", "pipedream")
"""The schedules of the prediction and throughput parts."""
SIDES = ("1f1b", "pipedream", "pipedream +vsync")
"""The accuracy part's runs: the synchronous yardstick, PipeDream, PipeDream with vertical
sync."""
PLOT_FILE = "accuracy_vs_time.png"
DEFAULT_MICROBATCHES = 4
"""Micro-batches a mini-batch of the accuracy runs and of every cell whose key names none
(the cells of a store made before the count was a setting)."""


def key_microbatches(key: Mapping[str, Any]) -> int:
    """The micro-batch count of a cell's key."""
    return int(key.get("microbatches", DEFAULT_MICROBATCHES))


def _part(records: Sequence[Mapping[str, Any]], part: str) -> list[Mapping[str, Any]]:
    return [record for record in records if record["key"]["part"] == part]


def _predict(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    rows = []
    for record in records:
        predicted = record["predicted"]
        rows.append(
            {
                "label": record["key"]["model"],
                "stages": record["key"]["stages"],
                "microbatches": key_microbatches(record["key"]),
                "partition": record["partition"],
                "predicted": predicted,
                "pipedream_vs_1f1b": predicted["1f1b"]["step_time_s"]
                / predicted["pipedream"]["step_time_s"],
            }
        )
    return {"rows": rows}


def _throughput(records: Sequence[Mapping[str, Any]], repeats: int) -> dict[str, Any]:
    """One row per (model, stages, micro-batches) whose every schedule has all its
    repeats; the ratio pipedream / 1f1b is taken per repeat."""
    groups: dict[tuple[str, int, int], list[Mapping[str, Any]]] = {}
    for record in records:
        key = record["key"]
        cell = (key["model"], key["stages"], key_microbatches(key))
        groups.setdefault(cell, []).append(record)
    rows = []
    for (label, stages, m), group in groups.items():
        runs: dict[str, list[dict[str, Any]]] = {}
        for schedule in SCHEDULES:
            done = sorted(
                (r for r in group if r["key"]["schedule"] == schedule),
                key=lambda r: int(r["key"]["repeat"]),
            )
            runs[schedule] = [dict(r["run"]) for r in done]
        if any(len(runs[schedule]) < repeats for schedule in SCHEDULES):
            continue  # not finished: shown once every repeat of every schedule ran
        ratio = [
            p["samples_per_s"] / s["samples_per_s"]
            for p, s in zip(runs["pipedream"], runs["1f1b"], strict=True)
        ]
        ratio_whole = [
            p["train_samples_per_s"] / s["train_samples_per_s"]
            for p, s in zip(runs["pipedream"], runs["1f1b"], strict=True)
        ]
        first = group[0]
        rows.append(
            {
                "cell": first["workload"],
                "label": label,
                "stages": stages,
                "microbatches": m,
                "oversubscribed": first["oversubscribed"],
                "partition": first["partition"],
                "samples_per_s": {
                    s: summarize([r["samples_per_s"] for r in runs[s]]).to_dict() for s in SCHEDULES
                },
                "bubble_fraction": {
                    s: statistics.median(r["bubble_fraction"] for r in runs[s]) for s in SCHEDULES
                },
                "pipedream_vs_1f1b": summarize(ratio).to_dict(),
                "pipedream_vs_1f1b_per_repeat": ratio,
                "pipedream_vs_1f1b_whole_run": summarize(ratio_whole).to_dict(),
                "runs": runs,
            }
        )
    return {"rows": rows}


def _accuracy(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The three sides' curves, each against the synchronous run (once all three ran)."""
    by_side = {record["key"]["side"]: record for record in records}
    if any(side not in by_side for side in SIDES):
        return None
    curves: dict[str, dict[str, Any]] = {}
    for side in SIDES:
        record = by_side[side]
        curves[side] = {
            name: record[name]
            for name in ("points", "final_accuracy", "time_to_target_s", "epochs_to_target",
                         "load_1m")
        }  # fmt: skip
    sync = curves["1f1b"]
    for curve in curves.values():
        curve["accuracy_minus_sync_points"] = 100 * (
            curve["final_accuracy"] - sync["final_accuracy"]
        )
        if curve["time_to_target_s"] and sync["time_to_target_s"]:
            curve["time_to_target_vs_sync"] = curve["time_to_target_s"] / sync["time_to_target_s"]
    first = by_side[SIDES[0]]
    return {"label": first["label"], "partition": first["partition"], "curves": curves}


def pipedream_payload(
    settings: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The study's JSON object (without the load averages and machine facts of the run):
    ``study``, ``settings``, and each part the settings name that has finished cells."""
    payload: dict[str, Any] = {"study": KIND, "settings": dict(settings)}
    parts = settings["parts"]
    if "predict" in parts:
        payload["predict"] = _predict(_part(records, "predict"))
    if "throughput" in parts:
        payload["throughput"] = _throughput(_part(records, "throughput"), settings["repeats"])
    if "accuracy" in parts:
        accuracy = _accuracy(_part(records, "accuracy"))
        if accuracy is not None:
            payload["accuracy"] = accuracy
    return payload


def _plot_accuracy(accuracy: Mapping[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for name, curve in accuracy["curves"].items():
        points = curve["points"]
        axis.plot(
            [p["train_s"] for p in points],
            [100 * p["val_accuracy"] for p in points],
            marker="o",
            label=name,
        )
    axis.set_xlabel("training time (s)")
    axis.set_ylabel("validation accuracy (%)")
    axis.set_title(f"accuracy vs time: {accuracy['label']}, 2 stages")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _stages(row: Mapping[str, Any]) -> str:
    return f"{row['stages']}" + (" (oversubscribed)" if row.get("oversubscribed") else "")


def build_pipedream_report(data: StudyData) -> Report:
    """A table per part (prediction, throughput, accuracy) and the accuracy plot."""
    payload = pipedream_payload(data.settings, data.records)
    sections = []
    if payload.get("predict", {}).get("rows"):
        rows = [
            [
                row["label"],
                str(row["stages"]),
                str(row["microbatches"]),
                ",".join(str(b) for b in row["partition"]),
                *(
                    f"{row['predicted'][s]['samples_per_s']:,.0f} "
                    f"({100 * row['predicted'][s]['bubble_fraction']:.0f}%)"
                    for s in SCHEDULES
                ),
                f"{row['pipedream_vs_1f1b']:.2f}x",
            ]
            for row in payload["predict"]["rows"]
        ]
        sections.append(
            Section(
                "Prediction: the simulator on the profiled stage costs",
                paragraphs=[
                    "Predicted samples/s of the steady state (bubble share in brackets) on the "
                    "profile-balanced partition every schedule runs; m micro-batches of 8 "
                    "samples a mini-batch."
                ],
                tables=[
                    Table(
                        ("model", "stages", "m", "boundaries", *SCHEDULES, "pipedream/1f1b"), rows
                    )
                ],
            )
        )
    if "throughput" in payload:
        rows = [
            [
                row["label"],
                _stages(row),
                str(row["microbatches"]),
                *(
                    f"{row['samples_per_s'][s]['median']:,.0f} "
                    f"({100 * row['bubble_fraction'][s]:.0f}%)"
                    for s in SCHEDULES
                ),
                f"{row['pipedream_vs_1f1b']['median']:.2f}x",
                f"{row['pipedream_vs_1f1b_whole_run']['median']:.2f}x",
            ]
            for row in payload["throughput"]["rows"]
        ]
        paragraphs = [
            f"Median samples/s of the steady state over {data.settings['repeats']} repeats "
            f"of {data.settings['steps']} steps (the order of the schedules rotates; bubble "
            "share in brackets); pipedream/1f1b: the median of the per-repeat ratios, in the "
            "steady state and over the whole run (fill and drain included)."
        ]
        if not rows:
            paragraphs.append("No model and depth has finished every repeat yet.")
        sections.append(
            Section(
                "Throughput on the same partition and micro-batch size",
                paragraphs=paragraphs,
                tables=[
                    Table(
                        ("model", "stages", "m", *SCHEDULES, "pipedream/1f1b", "whole run"),
                        rows,
                    )
                ]
                if rows
                else [],
            )
        )
    accuracy = payload.get("accuracy")
    if accuracy is not None:
        target = data.settings["target_accuracy"]
        rows = [
            [
                name,
                f"{100 * curve['final_accuracy']:.2f}%",
                f"{curve['accuracy_minus_sync_points']:+.2f}",
                str(curve["epochs_to_target"]) if curve["epochs_to_target"] else "-",
                f"{curve['time_to_target_s']:.1f}" if curve["time_to_target_s"] else "-",
                f"{curve['time_to_target_vs_sync']:.2f}x"
                if curve.get("time_to_target_vs_sync")
                else "-",
            ]
            for name, curve in accuracy["curves"].items()
        ]
        sections.append(
            Section(
                "Statistical efficiency: accuracy against time",
                paragraphs=[
                    f"{accuracy['label']} on 2 stages for {data.settings['epochs']} epochs "
                    f"with each side; target {100 * target:.0f}% validation accuracy."
                ],
                tables=[
                    Table(
                        (
                            "run",
                            "final accuracy",
                            "+-pts vs 1f1b",
                            "epochs to target",
                            "seconds to target",
                            "time vs 1f1b",
                        ),
                        rows,
                    )  # fmt: skip
                ],
                images=[_plot_accuracy(accuracy, data.directory / PLOT_FILE)],
            )
        )
    elif "accuracy" in data.settings["parts"]:
        sections.append(
            Section(
                "Statistical efficiency: accuracy against time",
                paragraphs=["Not every side has run yet: run the same command again."],
            )
        )
    return Report("PipeDream against the synchronous schedules", sections)
