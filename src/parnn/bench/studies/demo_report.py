"""The demo's report, from its records alone: every axis's verified candidate with its
predicted and measured samples/s, speedup over one thread and accuracy, the measured
winner and whether the plan picked it, the whole plan, and ``demo.png`` (predicted vs
measured per axis; accuracy per run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from parnn.bench.report import Report, Section, StudyData, Table

__all__ = ["AXIS_COLUMNS", "PLAN", "PLOT_FILE", "RESULTS_FILE", "ROLES", "SCHEMES_HINT",
           "axis_rows", "build_demo_report", "demo_payload", "epochs", "phases", "plot_demo",
           "verdict"]  # fmt: skip

PLOT_FILE = "demo.png"
RESULTS_FILE = "demo.json"
PLAN = "plan"
"""The ``run`` of the plan's cell (the others are ``verify``)."""
ROLES = ("baseline", "threads", "data", "pipeline", "hybrid")
"""The order of the runs: one process with one thread first, then the axes."""
SCHEMES_HINT = (
    "every partition scheme of a 2-stage LeNet-5 pipeline side by side (the demo before it "
    "planned): parnn study schemes --models lenet5 --stages 2"
)


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def demo_payload(
    settings: Mapping[str, Any], records: Sequence[Mapping[str, Any]], out: Path
) -> dict[str, Any]:
    """The ``parnn demo --json`` object, from the study's settings and records."""
    plan = next(r for r in records if r["key"]["run"] == PLAN)
    planned = {c["config"]["label"]: c for c in plan["candidates"]}
    runs = sorted(
        (r for r in records if r["key"]["run"] != PLAN),
        key=lambda r: ROLES.index(r["key"]["role"]) if r["key"]["role"] in ROLES else len(ROLES),
    )
    baseline = next((r for r in runs if r["key"]["role"] == "baseline"), None)
    base = planned[baseline["key"]["label"]] if baseline is not None else None
    axes = []
    for record in runs:
        candidate = planned[record["key"]["label"]]
        predicted = float(candidate["predicted_samples_per_s"])
        measured = record.get("samples_per_s")
        axes.append(
            {
                "role": record["key"]["role"],
                "axis": candidate["axis"],
                "label": candidate["config"]["label"],
                "config": candidate["config"],
                "rank": candidate["rank"],
                "predicted_samples_per_s": predicted,
                "measured_samples_per_s": measured,
                "prediction_error": None
                if not measured
                else (predicted - measured) / measured,
                "predicted_speedup": _ratio(
                    predicted, None if base is None else base["predicted_samples_per_s"]
                ),
                "measured_speedup": _ratio(
                    measured, None if baseline is None else baseline.get("samples_per_s")
                ),
                "val_accuracy": record.get("val_accuracy"),
                "run_s": record.get("wall_s"),
                "why": candidate["why"],
                "error": record.get("error"),
            }
        )  # fmt: skip
    measured_runs = [a for a in axes if a["measured_samples_per_s"]]
    winner = max(measured_runs, key=lambda a: a["measured_samples_per_s"], default=None)
    pick = next((c for c in plan["candidates"] if c.get("runnable")), None)
    return {
        "command": "demo",
        "model": settings["model"],
        "data": settings["data"],
        "input_shape": plan["input_shape"],
        "batch_size": settings["batch_size"],
        "epochs": settings["epochs"],
        "optimizer": {"name": settings["optimizer"], "lr": settings["lr"],
                      "lr_schedule": settings["lr_schedule"]},  # fmt: skip
        "cores": plan["cores"],
        "candidates": len(plan["candidates"]),
        "axes": axes,
        "winner": None if winner is None else _brief(winner),
        "plan_pick": None if pick is None else _brief_planned(pick),
        "plan_pick_won": None
        if winner is None or pick is None
        else winner["label"] == pick["config"]["label"],
        "reason": plan["reason"],
        "phases": {
            "plan_s": float(plan.get("cell_wall_s", 0.0)),
            "runs_s": sum(float(r.get("cell_wall_s", 0.0)) for r in runs),
        },
        "wall_s": sum(float(r.get("cell_wall_s", 0.0)) for r in records),
        "schemes": SCHEMES_HINT,
        "plot_path": str(out / PLOT_FILE),
        "results_path": str(out / RESULTS_FILE),
    }  # fmt: skip


def _brief(run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "label": run["label"],
        "axis": run["axis"],
        "predicted_samples_per_s": run["predicted_samples_per_s"],
        "measured_samples_per_s": run["measured_samples_per_s"],
    }


def _brief_planned(candidate: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "label": candidate["config"]["label"],
        "axis": candidate["axis"],
        "predicted_samples_per_s": candidate["predicted_samples_per_s"],
    }


def epochs(count: int) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{count} epoch{'' if count == 1 else 's'}"


def _number(value: float | None, pattern: str = "{:,.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def axis_rows(payload: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row per run: axis, layout, predicted/s, measured/s, error, speedup over one
    thread measured (predicted), val acc, run seconds (a failed run says so)."""
    rows: list[tuple[str, ...]] = []
    for run in payload["axes"]:
        measured = run["measured_samples_per_s"]
        accuracy = run["val_accuracy"]
        rows.append(
            (
                run["role"],
                run["label"],
                _number(run["predicted_samples_per_s"]),
                "failed" if run["error"] else _number(measured),
                _number(None if run["prediction_error"] is None else 100 * run["prediction_error"],
                        "{:+.0f}%"),
                f"{_number(run['measured_speedup'], '{:.2f}x')} "
                f"({_number(run['predicted_speedup'], '{:.2f}x')})",
                _number(None if accuracy is None else 100 * accuracy, "{:.1f}%"),
                _number(run["run_s"], "{:.1f}"),
            )
        )  # fmt: skip
    return rows


AXIS_COLUMNS = ("axis", "layout", "predicted/s", "measured/s", "error", "speedup (pred)",
                "val acc", "run s")  # fmt: skip


def verdict(payload: Mapping[str, Any]) -> str:
    """The winner (measured) and whether the plan picked it, in one sentence."""
    winner, pick = payload["winner"], payload["plan_pick"]
    if winner is None:
        return "no run finished: no winner"
    text = (
        f"winner (measured): {winner['label']} ({winner['axis']}) at "
        f"{winner['measured_samples_per_s']:,.0f} samples/s"
    )
    if pick is None:
        return text
    if payload["plan_pick_won"]:
        return f"{text}; the plan picked it too"
    return (
        f"{text}; the plan picked {pick['label']} ({pick['axis']}, predicted "
        f"{pick['predicted_samples_per_s']:,.0f} samples/s): not the measured winner"
    )


def phases(payload: Mapping[str, Any]) -> str:
    """Where the time went: the plan (profiles measured the first time, then cached) and
    the runs."""
    spent = payload["phases"]
    runs = ", ".join(f"{run['label']} {_number(run['run_s'], '{:.1f}')} s"
                     for run in payload["axes"])  # fmt: skip
    return (
        f"time: plan {spent['plan_s']:.1f} s (profiles and machine measured the first "
        f"time, then cached), runs {spent['runs_s']:.1f} s ({runs})"
    )


def plot_demo(payload: Mapping[str, Any], path: Path) -> Path:
    """Predicted beside measured samples/s per run, and each run's validation accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = payload["axes"]
    names = [f"{run['role']}\n{run['label']}" for run in runs]
    positions = list(range(len(runs)))
    width = 0.38
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
    left.bar(
        [p - width / 2 for p in positions],
        [run["predicted_samples_per_s"] for run in runs],
        width,
        label="predicted",
        color="#9ecae1",
    )
    left.bar([p + width / 2 for p in positions],
             [run["measured_samples_per_s"] or 0.0 for run in runs], width, label="measured",
             color="#1f77b4")  # fmt: skip
    winner = payload["winner"]
    if winner is not None:
        index = next(i for i, run in enumerate(runs) if run["label"] == winner["label"])
        left.annotate("winner", (index + width / 2, winner["measured_samples_per_s"]),
                      ha="center", va="bottom", fontsize=9, color="#d62728")  # fmt: skip
    left.set_xticks(positions, names, fontsize=8)
    left.set_ylabel("samples/s")
    left.set_title(
        f"predicted vs measured, {payload['cores']} cores, batch {payload['batch_size']}"
    )
    left.legend()
    accuracies = [100 * (run["val_accuracy"] or 0.0) for run in runs]
    right.bar(positions, accuracies, color="#2ca02c")
    right.set_xticks(positions, names, fontsize=8)
    right.set_ylim(max(0.0, min(accuracies, default=0.0) - 10), 100)
    right.set_ylabel("validation accuracy (%)")
    right.set_title(f"after {epochs(payload['epochs'])}, same optimizer")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def build_demo_report(data: StudyData) -> Report:
    settings = data.settings
    payload = demo_payload(settings, list(data.records), data.directory)
    plot_demo(payload, data.directory / PLOT_FILE)
    plan = next(r for r in data.records if r["key"]["run"] == PLAN)
    title = (
        f"parnn demo: {settings['model']} on {settings['data']}, batch {settings['batch_size']}, "
        f"{payload['cores']} cores, {epochs(settings['epochs'])} per run"
    )
    verified = Section(
        "Every axis, predicted and measured",
        paragraphs=[
            f"{verdict(payload)}.",
            "The plan predicted every way to spend the cores; the best runnable layout of "
            "every axis, one process with all the cores' threads and one with one thread "
            "were then trained for the same epochs with the same optimizer "
            f"({settings['optimizer']}, lr {settings['lr']}, {settings['lr_schedule']}). "
            "measured/s: the steady throughput of each run (its first "
            f"{settings['warmup_steps']} steps left out); error: (predicted - measured) / "
            "measured; speedup: over one process with one thread, measured (predicted).",
            f"Why the plan ranks them so: {payload['reason']}.",
            f"{phases(payload)}.",
            f"Not here: {payload['schemes']}.",
        ],
        tables=[Table(AXIS_COLUMNS, axis_rows(payload))],
        images=[Path(PLOT_FILE)],
    )
    candidates = Section(
        "The plan: every candidate",
        paragraphs=["Assumptions: " + "; ".join(plan["assumptions"]) + "."],
        tables=[
            Table(
                ("rank", "axis", "layout", "predicted/s", "what limits it"),
                [
                    (
                        str(c["rank"]),
                        c["axis"],
                        c["config"]["label"],
                        f"{c['predicted_samples_per_s']:,.0f}",
                        c["why"],
                    )
                    for c in plan["candidates"]
                ],
            )  # fmt: skip
        ],
    )
    return Report(title, [verified, candidates])
