"""Plots of a k-fold run, drawn from its records: CPU utilisation over time, and the jobs
on a time line (one row per worker), one panel per mode (parallel, serial).

A run resumed over several sessions is drawn session after session on one time axis,
with a dashed line where a session began. The engine (:mod:`parnn.jobs`) writes the
results; ``parnn kfold`` and ``parnn report DIR`` draw these from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the non-interactive backend

if TYPE_CHECKING:
    from parnn.jobs.results import KFoldResults

__all__ = ["plot_cpu", "plot_timeline", "save_kfold_plots"]


def _offsets(sessions: list[dict[str, Any]]) -> dict[int, float]:
    """Start of each session on the mode's time axis (sessions laid end to end)."""
    offsets: dict[int, float] = {}
    at = 0.0
    for session in sorted(sessions, key=lambda s: int(s["session"])):
        offsets[int(session["session"])] = at
        at += float(session["wall_s"])
    return offsets


def _mark_sessions(axis: Any, offsets: dict[int, float]) -> None:
    for index, start in sorted(offsets.items())[1:]:
        axis.axvline(start, color="grey", linestyle="--", linewidth=0.8)
        axis.text(start, 1.0, f" session {index}", fontsize=7, color="grey", va="bottom")


def _host_cpu(session: dict[str, Any], bin_s: float = 0.5) -> dict[str, tuple[list, list]]:
    """Per worker host of a Dask session: its workers' CPU summed in ``bin_s`` bins, as
    percent of the host's cores (the workers' own samples; none for the pool)."""
    sums: dict[str, dict[float, float]] = {}
    cores: dict[str, int] = {}
    for worker in session.get("worker_cpu") or []:
        host = str(worker.get("host"))
        cores[host] = max(1, int(worker.get("cores") or 1))
        bins = sums.setdefault(host, {})
        for time_s, value in zip(worker["times_s"], worker["cpu_percent"], strict=False):
            at = round(float(time_s) / bin_s) * bin_s
            bins[at] = bins.get(at, 0.0) + float(value or 0.0)
    return {
        host: (sorted(bins), [bins[t] / cores[host] for t in sorted(bins)])
        for host, bins in sums.items()
    }


def plot_cpu(results: KFoldResults, path: str | Path) -> Path:
    """Utilisation of each usable core (thin), their mean (bold) and this run's share
    (dashed) over time; one panel per mode."""
    modes = [mode for mode in ("parallel", "serial") if results.sessions_of(mode)]
    figure, axes = plt.subplots(
        max(1, len(modes)), 1, figsize=(8, 2.4 * max(1, len(modes)) + 0.6), squeeze=False
    )
    for axis, mode in zip(axes[:, 0], modes, strict=False):
        sessions = results.sessions_of(mode)
        offsets = _offsets(sessions)
        for session in sessions:
            cpu = session.get("cpu") or {}
            per_core = cpu.get("per_core", [])
            if not per_core:
                continue
            shift = offsets[int(session["session"])] + float(session.get("cpu_offset_s", 0.0))
            times = [shift + t for t in cpu.get("times_s", [])]
            cores = session.get("affinity") or list(range(len(per_core[0])))
            cores = [core for core in cores if core < len(per_core[0])]
            for core in cores:
                axis.plot(times, [row[core] for row in per_core], linewidth=0.6, alpha=0.5)
            mean = [sum(row[c] for c in cores) / max(1, len(cores)) for row in per_core]
            axis.plot(times, mean, color="black", linewidth=1.6, label="mean of usable cores")
            process = cpu.get("process", [])
            if process:
                scale = len(per_core[0]) / max(1, len(cores))
                axis.plot(
                    times[: len(process)],
                    [value * scale for value in process],
                    color="tab:red",
                    linestyle="--",
                    linewidth=1.0,
                    label="this run",
                )
            for host, (host_times, percent) in _host_cpu(session).items():
                start = offsets[int(session["session"])]
                axis.plot(
                    [start + t for t in host_times],
                    percent,
                    linestyle=":",
                    linewidth=1.4,
                    label=f"{host}: this run's Dask workers",
                )
        _mark_sessions(axis, offsets)
        timing = results.timing()[mode] or {}
        axis.set_title(
            f"{mode}: {timing.get('workers', '?')} worker(s) x "
            f"{timing.get('threads_per_job', '?')} thread(s), wall {timing.get('wall_s', 0):.1f} s, "
            f"mean {timing.get('cpu_mean_percent') or 0:.0f} %",
            fontsize=9,
        )
        axis.set_ylim(0, 105)
        axis.set_ylabel("CPU %")
        axis.grid(True, alpha=0.3)
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=False))
        if unique:
            axis.legend(unique.values(), unique.keys(), fontsize=7, loc="lower left")
    axes[-1, 0].set_xlabel("seconds since the pool started")
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, dpi=120)
    plt.close(figure)
    return target


def plot_timeline(results: KFoldResults, path: str | Path) -> Path:
    """Each job as a bar from its start to its end, one row per worker, coloured by model;
    failed jobs hatched. One panel per mode."""
    modes = [mode for mode in ("parallel", "serial") if results.jobs_of(mode)]
    figure, axes = plt.subplots(
        max(1, len(modes)), 1, figsize=(9, 1.0 + 1.3 * max(1, len(modes)) * 1.4), squeeze=False
    )
    palette = plt.get_cmap("tab10")
    colours = {model: palette(index % 10) for index, model in enumerate(results.models)}
    for axis, mode in zip(axes[:, 0], modes, strict=False):
        offsets = _offsets(results.sessions_of(mode))
        jobs = results.jobs_of(mode)
        workers = sorted({job.worker for job in jobs})
        for job in jobs:
            start = offsets.get(job.session, 0.0) + job.start_s
            width = max(job.end_s - job.start_s, 1e-3)
            axis.barh(
                job.worker,
                width,
                left=start,
                height=0.7,
                color=colours.get(job.model, "grey"),
                edgecolor="black",
                linewidth=0.4,
                hatch="xx" if not job.ok else None,
            )
            if width > 0:
                axis.text(
                    start + width / 2,
                    job.worker,
                    f"{job.scheduler[:4]} f{job.fold}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    clip_on=True,
                )
        _mark_sessions(axis, offsets)
        hosts = {job.worker: job.host for job in jobs if job.host}  # Dask: the worker's host
        axis.set_yticks(
            workers, [f"{hosts[w]} w{w}" if w in hosts else f"worker {w}" for w in workers]
        )
        axis.invert_yaxis()
        axis.set_title(f"{mode}: jobs on a time line (longest first)", fontsize=9)
        axis.grid(True, axis="x", alpha=0.3)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=colour, label=model) for model, colour in colours.items()
    ]
    if handles:
        axes[0, 0].legend(handles=handles, fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds since the pool started")
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, dpi=120)
    plt.close(figure)
    return target


def save_kfold_plots(results: KFoldResults, directory: str | Path | None = None) -> dict[str, str]:
    """Draw ``cpu.png`` and ``timeline.png`` into ``directory`` (default: the run's own),
    add them to ``results.files`` (``cpu_plot``, ``timeline_plot``) and return them."""
    target = Path(directory) if directory is not None else results.out_dir
    if target is None:
        raise ValueError("no directory to draw into: pass one")
    files = {
        "cpu_plot": str(plot_cpu(results, target / "cpu.png")),
        "timeline_plot": str(plot_timeline(results, target / "timeline.png")),
    }
    results.files = {**results.files, **files}
    return files
