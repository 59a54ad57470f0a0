"""Plots of data-parallel runs, rendered from their results: loss against wall time and
against samples, CPU utilisation over time, throughput bars (``parnn dp`` and its
``--compare``). A plot takes live results or runs read back from a study's store alike
(anything shaped as :class:`PlottedRun`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the non-interactive backend

from parnn.data_parallel.result import DataParallelResult, LossCurve  # noqa: E402
from parnn.monitor import CpuTrace  # noqa: E402

__all__ = ["PlottedRun", "plot_cpu", "plot_loss", "plot_run", "plot_throughput", "smooth"]


class PlottedRun(Protocol):
    """What the plots read of a run: a :class:`DataParallelResult`, or a comparison's run
    read back from its store (:class:`parnn.bench.studies.compare_report.ComparedRun`)."""

    @property
    def label(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def data(self) -> str: ...
    @property
    def samples_per_s(self) -> float: ...
    @property
    def curve(self) -> LossCurve: ...
    @property
    def cpu(self) -> CpuTrace | None: ...
    @property
    def cpu_summary(self) -> Mapping[str, Any]: ...


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` points (shorter at the start)."""
    out: list[float] = []
    total = 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        out.append(total / min(index + 1, window))
    return out


def plot_loss(runs: Sequence[PlottedRun], path: Path, *, x_axis: str = "time") -> Path:
    """Training loss (moving average over ~2% of the steps) against seconds or samples."""
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for run in runs:
        curve = run.curve
        if not len(curve):
            continue
        window = max(1, len(curve) // 50)
        x = curve.time_s if x_axis == "time" else curve.samples
        axis.plot(x, smooth(curve.loss, window), label=run.label, linewidth=1.4)
    axis.set_xlabel("wall time of training (s)" if x_axis == "time" else "training samples seen")
    axis.set_ylabel("training loss (moving average)")
    axis.set_yscale("log")
    axis.set_title(f"loss vs {'time' if x_axis == 'time' else 'samples'}: {_subject(runs)}")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_cpu(runs: Sequence[PlottedRun], path: Path) -> Path:
    """One panel per run: each core (thin), their mean (bold) and this job's share (dashed)."""
    panels = [run for run in runs if run.cpu is not None]
    figure, axes = plt.subplots(
        max(1, len(panels)), 1, figsize=(7.5, 1.9 * max(1, len(panels)) + 0.6), squeeze=False
    )
    for axis, run in zip(axes[:, 0], panels, strict=False):
        trace = run.cpu
        assert trace is not None
        for core in range(trace.num_cores):
            axis.plot(
                trace.times_s, [sample[core] for sample in trace.per_core], linewidth=0.6,
                alpha=0.6, label=f"core {core}",
            )  # fmt: skip
        axis.plot(trace.times_s, trace.total, color="black", linewidth=1.6, label="all cores")
        axis.plot(trace.times_s, trace.process, color="tab:red", linestyle="--", label="this job")
        axis.set_ylim(0, 105)
        axis.set_ylabel("CPU %")
        axis.set_title(
            f"{run.label}: mean {run.cpu_summary.get('mean_total_percent')}% of the machine, "
            f"this job {run.cpu_summary.get('mean_process_percent')}%",
            fontsize=9,
        )
        axis.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("seconds since the run started (process start-up included)")
    if panels:
        axes[0, 0].legend(fontsize=7, ncol=4, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_run(result: DataParallelResult, out: Path) -> dict[str, str]:
    """The figures of one run in ``out`` (loss vs time and samples, CPU), by name."""
    return {
        "loss_vs_time": str(plot_loss([result], out / "loss_vs_time.png", x_axis="time")),
        "loss_vs_samples": str(plot_loss([result], out / "loss_vs_samples.png", x_axis="samples")),
        "cpu": str(plot_cpu([result], out / "cpu.png")),
    }


def plot_throughput(runs: Sequence[PlottedRun], path: Path) -> Path:
    """Training samples per second of each run."""
    figure, axis = plt.subplots(figsize=(7.5, 3.5))
    labels = [run.label for run in runs]
    values = [run.samples_per_s for run in runs]
    bars = axis.bar(labels, values, color="tab:blue")
    axis.bar_label(bars, labels=[f"{value:,.0f}" for value in values], fontsize=8)
    axis.set_ylabel("training samples / s")
    axis.set_title(f"throughput: {_subject(runs)}")
    axis.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _subject(runs: Sequence[PlottedRun]) -> str:
    return f"{runs[0].model} on {runs[0].data}" if runs else ""
