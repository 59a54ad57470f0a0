"""The demo's report, from its records alone: the table of every scheme beside the
reference, the fastest named, and ``demo.png`` (throughput per scheme; per-stage compute
per step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parnn.bench.report import Report, Section, StudyData, Table

__all__ = ["PLOT_FILE", "REFERENCE", "RESULTS_FILE", "build_demo_report", "demo_payload",
           "plot_demo"]  # fmt: skip

PLOT_FILE = "demo.png"
RESULTS_FILE = "demo.json"
REFERENCE = "reference"
"""The ``run`` of the reference trainer's cell (the others are ``pipeline``)."""


def demo_payload(settings: Any, records: list[Any], out: Path) -> dict[str, Any]:
    """The ``parnn demo --json`` object, from the study's settings and records."""
    reference = next(r for r in records if r["key"]["run"] == REFERENCE)
    runs = []
    for record in records:
        if record["key"]["run"] == REFERENCE:
            continue
        for scheme in record["key"]["schemes"].split(","):
            runs.append(
                {
                    "scheme": scheme,
                    **{name: record[name] for name in ("partition", "units_per_stage",
                                                       "samples_per_s", "step_time_s",
                                                       "bubble_fraction", "val_accuracy")},
                    "speedup_vs_reference": record["samples_per_s"] / reference["samples_per_s"],
                    "stage_compute_s": record["stage_compute_s"],
                }
            )  # fmt: skip
    order = {scheme: index for index, scheme in enumerate(settings.get("schemes", []))}
    runs.sort(key=lambda run: order.get(run["scheme"], len(order)))
    best = max(runs, key=lambda run: run["samples_per_s"])
    return {
        "command": "demo",
        "model": settings["model"],
        "data": settings["data"],
        "stages": settings["stages"],
        "batch_size": settings["batch_size"],
        "microbatches": settings["microbatches"],
        "epochs": settings["epochs"],
        "reference": {
            "samples_per_s": reference["samples_per_s"],
            "val_accuracy": reference["val_accuracy"],
        },
        "runs": runs,
        "best_scheme": best["scheme"],
        "wall_s": sum(float(r.get("cell_wall_s", 0.0)) for r in records),
        "plot_path": str(out / PLOT_FILE),
        "results_path": str(out / RESULTS_FILE),
    }


def plot_demo(runs: list[dict[str, Any]], reference_rate: float, path: Path) -> Path:
    """Throughput per scheme against the reference, and each stage's compute per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [run["scheme"] for run in runs]
    stages = max((len(run["stage_compute_s"]) for run in runs), default=0)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    left.bar(names, [run["samples_per_s"] for run in runs], color="#1f77b4")
    left.axhline(reference_rate, color="#d62728", linestyle="--", label="1 process (reference)")
    left.set_ylabel("samples/s (median step)")
    left.set_title("throughput per partition scheme")
    left.tick_params(axis="x", rotation=35)
    left.legend()
    bottom = [0.0] * len(runs)
    for stage in range(stages):
        heights = [1000 * run["stage_compute_s"][stage] for run in runs]
        right.bar(names, heights, bottom=bottom, label=f"stage {stage}")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    right.set_ylabel("compute per step (ms)")
    right.set_title("per-stage compute: the slowest stage sets the pace")
    right.tick_params(axis="x", rotation=35)
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def build_demo_report(data: StudyData) -> Report:
    settings = data.settings
    payload = demo_payload(settings, list(data.records), data.directory)
    reference = payload["reference"]
    plot_demo(payload["runs"], reference["samples_per_s"], data.directory / PLOT_FILE)
    accuracy = reference["val_accuracy"]
    rows = [("1 process (reference)", "-", f"{reference['samples_per_s']:,.0f}", "1.00x", "",
             "", f"{100 * accuracy:.1f}%" if accuracy is not None else "-")]  # fmt: skip
    for run in payload["runs"]:
        rows.append(
            (
                run["scheme"],
                "|".join(map(str, run["units_per_stage"])),
                f"{run['samples_per_s']:,.0f}",
                f"{run['speedup_vs_reference']:.2f}x",
                f"{1000 * run['step_time_s']:.1f}",
                f"{100 * run['bubble_fraction']:.0f}%",
                f"{100 * run['val_accuracy']:.1f}%" if run["val_accuracy"] is not None else "-",
            )
        )
    title = (
        f"parnn demo: {settings['model']} on {settings['data']}, {settings['stages']}-stage "
        f"pipeline ({settings['schedule']}, {settings['microbatches']} micro-batches of "
        f"{settings['batch_size'] // settings['microbatches']}), {settings['epochs']} epochs"
    )
    section = Section(
        "Every scheme beside one process",
        paragraphs=[
            f"Fastest: {payload['best_scheme']}. Schemes that give the same partition share "
            "one run. samples/s: the median step; speedup: over the reference trainer in one "
            "process with one thread."
        ],
        tables=[
            Table(
                ("scheme", "units", "samples/s", "speedup", "step ms", "bubble", "val acc"), rows
            )  # fmt: skip
        ],
        images=[Path(PLOT_FILE)],
    )
    return Report(title, [section])
