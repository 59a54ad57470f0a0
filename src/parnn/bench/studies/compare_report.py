"""What a comparison of data-parallel engines shows (``parnn dp --compare``): each engine's
run as its cell stores it (:class:`ComparedRun`), the speedup rows over the two serial
baselines (:class:`Comparison`), the loss, CPU and throughput plots, and the study's
report (``parnn report DIR``), all rendered from the study's store alone.

The study itself (which engines, their configs, running them into the store) is
:mod:`parnn.bench.studies.compare`; this module knows nothing of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parnn.bench.cells import renamed_fields
from parnn.bench.report import Report, Section, StudyData, Table

if TYPE_CHECKING:  # the engine's values: imported when a run is measured or plotted
    from parnn.data_parallel.result import DataParallelResult, LossCurve
    from parnn.monitor import CpuTrace

__all__ = [
    "KIND",
    "PLOT_FILES",
    "ComparedRun",
    "Comparison",
    "build_compare_report",
    "comparison_of",
    "draw_plots",
]

KIND = "dp-compare"
"""The study kind of a comparison's store (``study.json``)."""
PLOT_FILES = {
    "loss_vs_time": "loss_vs_time.png",
    "loss_vs_samples": "loss_vs_samples.png",
    "cpu": "cpu.png",
    "throughput": "throughput.png",
}
"""The plots of a comparison, by name, and their files in the study's directory."""


@dataclass(frozen=True, slots=True)
class ComparedRun:
    """One engine's run of a comparison, as its cell records it: the run's result object
    (:meth:`DataParallelResult.to_dict` with its CPU trace), and what the speedup rows
    read of its config. The plots read it as they read a live result."""

    result: Mapping[str, Any]
    ranks: int
    """Processes of the engine (1 for serial)."""
    threads: int
    """Intra-op threads of each process."""
    independent: bool
    """Replicas averaged once, at the end: the zero-communication ceiling."""

    @classmethod
    def of(cls, result: DataParallelResult) -> ComparedRun:
        """The record of a finished run."""
        return cls(
            result=result.to_dict(cpu_trace=True),
            ranks=result.config.num_ranks,
            threads=result.config.threads,
            independent=result.independent,
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ComparedRun:
        """The run of a cell record (its fields, as :meth:`to_record` stores them; a record
        written before the renames is read under today's names: :func:`renamed_fields`)."""
        values = renamed_fields(record)
        return cls(**{item.name: values[item.name] for item in fields(cls)})

    def to_record(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def to_dict(self, *, cpu_trace: bool = False) -> dict[str, Any]:
        """The run's result object (``parnn dp``'s run keys), with or without its CPU trace."""
        return {key: value for key, value in self.result.items() if cpu_trace or key != "cpu_trace"}

    @property
    def label(self) -> str:
        return str(self.result["label"])

    @property
    def engine(self) -> str:
        return str(self.result["engine"])

    @property
    def model(self) -> str:
        return str(self.result["model"])

    @property
    def data(self) -> str:
        return str(self.result["data"])

    @property
    def samples_per_s(self) -> float:
        return float(self.result["samples_per_s"])

    @property
    def accuracy(self) -> float | None:
        val = self.result.get("val")
        return None if val is None else float(val["accuracy"])

    @property
    def cpu_summary(self) -> Mapping[str, Any]:
        summary: Mapping[str, Any] = self.result.get("cpu") or {}
        return summary

    @property
    def curve(self) -> LossCurve:
        """The loss curve as stored (at most 200 points, each the mean of its steps)."""
        from parnn.data_parallel.result import LossCurve

        curve = self.result["curve"]
        return LossCurve(list(curve["time_s"]), list(curve["samples"]), list(curve["loss"]))

    @property
    def cpu(self) -> CpuTrace | None:
        """The CPU samples of the run, when they were recorded."""
        from parnn.monitor import CpuTrace

        trace = self.result.get("cpu_trace")
        if not trace:
            return None
        return CpuTrace(
            interval_s=trace["interval_s"],
            start_s=0.0,
            times_s=list(trace["times_s"]),
            per_core=[list(sample) for sample in trace["per_core"]],
            total=list(trace["total"]),
            process=list(trace["process"]),
        )


@dataclass(slots=True)
class Comparison:
    """The runs of one comparison, baselines first."""

    runs: list[ComparedRun]

    def _baseline(self, threads_all: bool) -> ComparedRun | None:
        serial = [run for run in self.runs if run.engine == "serial"]
        if not serial:
            return None
        return (
            max(serial, key=lambda run: run.threads)
            if threads_all
            else min(serial, key=lambda run: run.threads)
        )

    def _independent(self) -> ComparedRun | None:
        return next((run for run in self.runs if run.independent), None)

    def speedups(self) -> list[dict[str, Any]]:
        """One row per run: throughput, speedups over both baselines (and the share of the
        ``independent`` ceiling when it ran), accuracy and CPU."""
        one = self._baseline(threads_all=False)
        every = self._baseline(threads_all=True)
        ceiling = self._independent()
        one_accuracy = one.accuracy if one is not None else None
        rows = []
        for run in self.runs:
            accuracy = run.accuracy
            cpu = run.cpu_summary
            rows.append(
                {
                    "label": run.label,
                    "engine": run.engine,
                    "transport": run.result.get("transport"),
                    "ranks": run.ranks,
                    "threads": run.threads,
                    "samples_per_s": round(run.samples_per_s, 1),
                    "train_s": round(float(run.result["train_s"]), 3),
                    "speedup_vs_1_thread": _ratio(run, one),
                    "speedup_vs_all_cores": _ratio(run, every),
                    "share_of_independent": _ratio(run, ceiling),
                    "accuracy": accuracy,
                    "accuracy_delta_points": (
                        round(100 * (accuracy - one_accuracy), 2)
                        if accuracy is not None and one_accuracy is not None
                        else None
                    ),
                    "final_train_loss": run.result.get("final_train_loss"),
                    "cpu_total_percent": cpu.get("mean_total_percent"),
                    "cpu_process_percent": cpu.get("mean_process_percent"),
                    "peak_rss_mib": max(rank["peak_rss_mib"] for rank in run.result["ranks"]),
                }
            )
        return rows

    def to_dict(self, *, cpu_trace: bool = False) -> dict[str, Any]:
        return {
            "runs": [run.to_dict(cpu_trace=cpu_trace) for run in self.runs],
            "speedup": self.speedups(),
        }


def _ratio(run: ComparedRun, baseline: ComparedRun | None) -> float | None:
    if baseline is None or baseline.samples_per_s <= 0:
        return None
    return round(run.samples_per_s / baseline.samples_per_s, 3)


def comparison_of(engines: Sequence[str], records: Sequence[Mapping[str, Any]]) -> Comparison:
    """The comparison of a study's records, in the order of its ``engines`` (the names of
    ``--compare``, each a cell keyed by ``engine``); engines not yet run are left out."""
    by_name = {record["key"]["engine"]: ComparedRun.from_record(record) for record in records}
    return Comparison([by_name[name] for name in engines if name in by_name])


def draw_plots(comparison: Comparison, directory: Path) -> dict[str, str]:
    """The loss (against time and samples), CPU and throughput plots in ``directory``;
    their paths by name."""
    from parnn.bench.data_parallel_plots import plot_cpu, plot_loss, plot_throughput

    runs = comparison.runs
    paths = {name: directory / file for name, file in PLOT_FILES.items()}
    plot_loss(runs, paths["loss_vs_time"], x_axis="time")
    plot_loss(runs, paths["loss_vs_samples"], x_axis="samples")
    plot_cpu(runs, paths["cpu"])
    plot_throughput(runs, paths["throughput"])
    return {name: str(path) for name, path in paths.items()}


def _percent(value: float | None) -> str:
    return f"{100 * value:.2f}%" if value is not None else "-"


def _times(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def build_compare_report(data: StudyData) -> Report:
    """The speedup table of every engine finished so far and the four plots."""
    settings = data.settings
    engines = list(settings["engines"])
    comparison = comparison_of(engines, data.records)
    draw_plots(comparison, data.directory)
    rows = comparison.speedups()
    ceiling = any(row["share_of_independent"] is not None for row in rows)
    columns = ["run", "R x T", "samples/s", "vs 1 thread", "vs all cores"]
    columns += ["of independent"] if ceiling else []
    columns += ["val acc", "+-pts", "CPU machine/job %", "train s", "peak RSS MiB"]
    table_rows = []
    for row in rows:
        delta = row["accuracy_delta_points"]
        table_rows.append(
            [
                row["label"],
                f"{row['ranks']} x {row['threads']}",
                f"{row['samples_per_s']:,.0f}",
                _times(row["speedup_vs_1_thread"]),
                _times(row["speedup_vs_all_cores"]),
                *([_percent(row["share_of_independent"])] if ceiling else []),
                _percent(row["accuracy"]),
                f"{delta:+.2f}" if delta is not None else "-",
                "/".join(
                    "-" if value is None else f"{value}"
                    for value in (row["cpu_total_percent"], row["cpu_process_percent"])
                ),
                f"{row['train_s']:.2f}",
                f"{row['peak_rss_mib']:.0f}",
            ]
        )
    facts = settings["facts"]
    first = comparison.runs[0].result if comparison.runs else {}
    shape = "x".join(str(size) for size in facts["input_shape"])
    paragraphs = [
        f"{facts['model']} ({facts['parameters']:,} parameters) on {facts['data']} "
        f"({shape}; {first.get('num_train', 0):,} training and {first.get('num_val', 0):,} "
        "validation samples): every engine starts from the same initial weights and sees "
        "the same data. Speedup: samples/s of training over one process with one thread "
        "(vs 1 thread) and over one process with an intra-op thread per core "
        "(vs all cores); R x T: ranks x threads; +-pts: validation accuracy points "
        "against serial with one thread; CPU: the machine's mean use and this job's share.",
    ]
    if ceiling:
        paragraphs.append(
            "of independent: the share of the ceiling measured beside the engines, N "
            "replicas that never talk until one average at the end (every engine's work "
            "minus all of its communication and waiting)."
        )
    missing = [name for name in engines if name not in {r["key"]["engine"] for r in data.records}]
    if missing:
        paragraphs.append(
            f"Not run yet: {', '.join(missing)} ({len(comparison.runs)} of {len(engines)} "
            "engines finished); run the same command again to finish the comparison."
        )
    return Report(
        f"Data-parallel engines side by side: {facts['model']} on {facts['data']}",
        [
            Section(
                "Speedup over the serial baselines",
                paragraphs=paragraphs,
                tables=[Table(columns, table_rows)],
            ),
            Section(
                "Loss, CPU and throughput",
                paragraphs=[
                    "Training loss (moving average) against wall time and against samples "
                    "seen; each core's use, their mean and this job's share over every run; "
                    "training samples per second."
                ],
                images=[data.directory / file for file in PLOT_FILES.values()],
            ),
        ],
    )
