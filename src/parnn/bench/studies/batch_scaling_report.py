"""The batch-scaling study's report, from its records alone: the best trial per batch
size, the regimes of data parallelism, and ``steps_vs_batch.png`` (steps to the target
against batch size, log-log, with the perfect-scaling line and each regime shaded)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the non-interactive backend

from parnn.bench.report import Report, Section, StudyData, Table  # noqa: E402
from parnn.bench.studies.batch_scaling import (  # noqa: E402
    BatchScalingConfig,
    BatchScalingResult,
    best_points,
    trials_of,
)

__all__ = ["PLOT_FILE", "batch_scaling_result", "build_batch_scaling_report", "plot_batch_scaling"]

PLOT_FILE = "steps_vs_batch.png"


def batch_scaling_result(data: StudyData) -> BatchScalingResult:
    """The study's result (points, regimes, trials) rebuilt from its store."""
    settings = data.settings
    names = BatchScalingConfig.__dataclass_fields__
    config = BatchScalingConfig(**{name: settings[name] for name in names if name in settings})
    trials = trials_of(data.records)
    train_samples = int(settings.get("train_samples") or 1)
    return BatchScalingResult(config, trials, best_points(config, trials, train_samples))


def build_batch_scaling_report(data: StudyData) -> Report:
    settings = data.settings
    result = batch_scaling_result(data)
    subject = f"{settings.get('model', '?')} on {settings.get('data', '?')}"
    plot_batch_scaling(result, data.directory / PLOT_FILE, title=subject)
    points = [
        (
            str(point.batch_size),
            f"{point.best_lr:g}" if point.best_lr is not None else "-",
            f"{point.steps:,}" if point.steps is not None else "not reached",
            f"{point.epochs:.2f}" if point.epochs is not None else "-",
            str(point.trials),
        )
        for point in result.points
    ]
    regimes = [
        (span["regime"], f"{span['from_batch']}-{span['to_batch']}",
         ", ".join(f"{slope:+.2f}" for slope in span["slopes"]))
        for span in result.regimes
    ]  # fmt: skip
    target = 100 * result.config.target_accuracy
    return Report(
        f"Batch-size scaling: {subject}",
        [
            Section(
                f"Steps to {target:g}% validation accuracy",
                paragraphs=[
                    "Each batch size's learning rate is tuned over the grid "
                    f"{', '.join(f'{lr:g}' for lr in result.config.learning_rates)} "
                    "(a hill climb); the best trial counts."
                ],
                tables=[Table(("batch", "best lr", "steps", "epochs", "trials"), points)],
                images=[Path(PLOT_FILE)],
            ),
            Section(
                "Regimes (local slope of log steps vs log batch)",
                tables=[Table(("regime", "batch sizes", "slopes"), regimes)],
            ),
        ],
    )


_REGIME_COLOURS = {
    "perfect scaling": "tab:green",
    "diminishing returns": "tab:orange",
    "maximal data parallelism": "tab:red",
}


def plot_batch_scaling(result: BatchScalingResult, path: Path, *, title: str = "") -> Path:
    """Steps to the target accuracy against batch size, log-log, with the perfect-scaling
    line through the smallest batch size and each regime shaded."""
    points = [point for point in result.points if point.steps is not None]
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    if points:
        sizes = [point.batch_size for point in points]
        steps = [point.steps or 0 for point in points]
        axis.plot(sizes, steps, marker="o", color="tab:blue", label="measured (best LR)")
        for point in points:
            axis.annotate(f"lr {point.best_lr:g}", (point.batch_size, point.steps or 0),
                          textcoords="offset points", xytext=(4, 6), fontsize=7)  # fmt: skip
        all_sizes = [point.batch_size for point in result.points]
        ideal = [steps[0] * sizes[0] / size for size in all_sizes]
        axis.plot(
            all_sizes, ideal, linestyle="--", color="grey", label="perfect scaling (slope -1)"
        )
        for span in result.regimes:
            colour = _REGIME_COLOURS.get(span["regime"], "lightgrey")
            axis.axvspan(span["from_batch"], span["to_batch"], color=colour, alpha=0.12,
                         label=span["regime"])  # fmt: skip
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("batch size")
    axis.set_ylabel(f"steps to {100 * result.config.target_accuracy:g}% validation accuracy")
    axis.set_title(title or "batch-size scaling")
    axis.grid(True, which="both", alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axis.legend(unique.values(), unique.keys(), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
