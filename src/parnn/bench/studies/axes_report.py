"""What a comparison of the axes of parallelism shows: the conclusion its numbers support
(derived from the table, never canned), a bar plot of throughput, and the study's report
(``parnn report DIR``) rendered from its store alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from parnn.bench.report import Report, Section, StudyData, Table
from parnn.bench.studies.axes import WARMUP_STEPS, AxesResult, axes_result

__all__ = [
    "ACCURACY_TOLERANCE_POINTS",
    "PLOT_FILE",
    "TOO_CLOSE",
    "axes_table_row",
    "build_axes_report",
    "conclude",
    "plot_axes",
]

PLOT_FILE = "throughput.png"

ACCURACY_TOLERANCE_POINTS = 1.0
"""A variant preserves accuracy when it is within this many points of serial's."""
TOO_CLOSE = 0.05
"""Two throughputs closer than this relative gap are called a tie."""


def conclude(result: AxesResult) -> list[str]:
    """What the numbers support, one sentence a line (derived, never canned)."""
    rows = result.rows()
    base = rows[0]
    lines = []
    ranked = sorted(rows, key=lambda row: row["samples_per_s"], reverse=True)
    best = ranked[0]
    cores = result.config.num_ranks
    lines.append(
        f"Fastest: {best['label']} at {best['samples_per_s']:,.0f} samples/s, "
        f"{best['speedup_vs_serial']:.2f}x serial with 1 thread "
        f"({100 * best['samples_per_s'] / (cores * base['samples_per_s']):.0f}% of the "
        f"ideal {cores}x on {cores} cores)."
    )
    if len(ranked) > 1 and ranked[1]["samples_per_s"] >= (1 - TOO_CLOSE) * best["samples_per_s"]:
        gap = 1 - ranked[1]["samples_per_s"] / best["samples_per_s"]
        lines.append(
            f"{ranked[1]['label']} is within {100 * gap:.1f}% of it: too close to call "
            "on one run of a shared machine."
        )
    data_rows = [row for row in ranked if row["axis"] == "data"]
    pipe = next((row for row in rows if row["axis"] == "pipeline"), None)
    threads = next((row for row in rows if row["axis"] == "threads"), None)
    if data_rows and pipe is not None and pipe["samples_per_s"] > 0:
        ratio = data_rows[0]["samples_per_s"] / pipe["samples_per_s"]
        faster, slower = (data_rows[0], pipe) if ratio >= 1 else (pipe, data_rows[0])
        tie = " (a tie within noise)" if abs(1 - ratio) < TOO_CLOSE else ""
        lines.append(
            f"Data vs pipeline parallelism: {faster['label']} is "
            f"{max(ratio, 1 / ratio):.2f}x {slower['label']}{tie}; the pipeline's cores were "
            f"idle for {100 * (pipe['bubble_fraction'] or 0):.0f}% of each step (bubble and "
            "waits)"
            + (", while data-parallel ranks all compute and only synchronise." if ratio >= 1
               else ".")
        )  # fmt: skip
    best_parallel = next((row for row in ranked if row["axis"] in ("data", "pipeline")), None)
    if threads is not None and best_parallel is not None and threads["samples_per_s"] > 0:
        ratio = best_parallel["samples_per_s"] / threads["samples_per_s"]
        lines.append(
            f"Processes vs threads on the same {cores} cores: {best_parallel['label']} is "
            f"{ratio:.2f}x one process with {threads['threads']} intra-op threads "
            f"({threads['speedup_vs_serial']:.2f}x serial"
            + ("; its extra threads made it slower than one thread)." if
               threads["speedup_vs_serial"] < 1 else ").")
        )  # fmt: skip
    lines.append(_accuracy_sentence(rows))
    lines.append(_memory_sentence(rows, parameters=result.parameters))
    lines.append(_verdict(ranked))
    measured = base["steps"] - WARMUP_STEPS
    load = result.machine.get("load_average_1m")
    usable = result.machine.get("usable_cores") or cores
    if measured < 20 or (isinstance(load, int | float) and load > usable):
        lines.append(
            f"Caveat: {measured} measured steps per run and a 1-minute load average of "
            f"{load} on {usable} cores: rerun with more --epochs on an idle machine for "
            "firmer throughput numbers."
        )
    return lines


def _accuracy_sentence(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    if base["accuracy"] is None:
        return "Accuracy: not measured."
    deltas = [(row["label"], row["accuracy_delta_points"]) for row in rows[1:]]
    off = [(label, d) for label, d in deltas if d is None or abs(d) > ACCURACY_TOLERANCE_POINTS]
    same = [label for label, d in deltas if d == 0]
    text = f"Accuracy: serial reached {100 * base['accuracy']:.2f}%; "
    if not off:
        worst = max((abs(d) for _, d in deltas if d is not None), default=0.0)
        text += (
            f"every variant is within {ACCURACY_TOLERANCE_POINTS:g} point of it "
            f"(largest gap {worst:.2f} points)"
        )
    else:
        text += (
            "outside "
            + f"{ACCURACY_TOLERANCE_POINTS:g} point: "
            + ", ".join(
                f"{label} ({d:+.2f})" if d is not None else f"{label} (not measured)"
                for label, d in off
            )
        )
    if same:
        text += f"; {', '.join(same)} match it exactly (the same updates in the same order)"
    return text + "."


def _verdict(ranked: list[dict[str, Any]]) -> str:
    """The fastest variants that keep serial's accuracy (ties named together)."""
    kept = [
        row
        for row in ranked
        if row["accuracy_delta_points"] is not None
        and abs(row["accuracy_delta_points"]) <= ACCURACY_TOLERANCE_POINTS
    ]
    lost = [row["label"] for row in ranked if row not in kept]
    if not kept:
        return "Verdict: no variant kept serial's accuracy."
    top = [
        row for row in kept if row["samples_per_s"] >= (1 - TOO_CLOSE) * kept[0]["samples_per_s"]
    ]
    names = " and ".join(row["label"] for row in top)
    speedups = " and ".join(f"{row['speedup_vs_serial']:.2f}x" for row in top)
    text = f"Verdict: {names} {'give' if len(top) > 1 else 'gives'} the most samples/s "
    text += f"at serial's accuracy ({speedups} serial)"
    if lost:
        text += f"; {', '.join(lost)} lost accuracy at this learning rate and length"
    return text + "."


def _memory_sentence(rows: list[dict[str, Any]], *, parameters: int) -> str:
    low = min(rows, key=lambda row: row["peak_rss_mib"])
    high = max(rows, key=lambda row: row["peak_rss_mib"])
    parameters_mib = parameters * 4 / 2**20  # float32
    text = (
        f"Memory: peak RSS per process ranges from {low['peak_rss_mib']:.0f} MiB "
        f"({low['label']}) to {high['peak_rss_mib']:.0f} MiB ({high['label']}); "
        f"the model's parameters are {parameters_mib:.2f} MiB"
    )
    if 3 * parameters_mib < 0.1 * low["peak_rss_mib"]:  # parameters, grads, momentum
        text += (
            ", so each process's memory is the Python/torch runtime, not the model: splitting "
            "the model into stages saves no meaningful memory at this size, and every extra "
            f"process costs about {low['peak_rss_mib']:.0f} MiB"
        )
    return text + "."


def plot_axes(result: AxesResult, path: Path) -> Path:
    """Bars of samples/s per variant, coloured by axis, with the ideal linear speedup."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"none": "tab:gray", "threads": "tab:green", "data": "tab:blue"}
    rows = result.rows()
    figure, axis = plt.subplots(figsize=(8, 4))
    values = [row["samples_per_s"] for row in rows]
    bars = axis.bar(
        [row["label"] for row in rows],
        values,
        color=[colours.get(row["axis"], "tab:orange") for row in rows],
    )
    axis.bar_label(bars, labels=[f"{value:,.0f}" for value in values], fontsize=8)
    ideal = result.config.num_ranks * rows[0]["samples_per_s"]
    axis.axhline(ideal, color="black", linestyle="--", linewidth=1, label="ideal: cores x serial")
    axis.set_ylabel("training samples / s (median step)")
    axis.set_title(f"axes of parallelism: {result.config.model} on {result.config.data}")
    axis.tick_params(axis="x", labelsize=8, labelrotation=15)
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def axes_table_row(row: Mapping[str, Any]) -> tuple[str, ...]:
    """One variant's cells of the axes table (the report's and the command's): variant,
    axis, ranks x threads, samples/s, speedup, val acc, +-pts, RSS MiB."""
    return (
        row["label"],
        row["axis"],
        f"{row['ranks']} x {row['threads']}",
        f"{row['samples_per_s']:,.0f}",
        f"{row['speedup_vs_serial']:.2f}x" if row["speedup_vs_serial"] is not None else "-",
        f"{100 * row['accuracy']:.2f}%" if row["accuracy"] is not None else "-",
        f"{row['accuracy_delta_points']:+.2f}" if row["accuracy_delta_points"] is not None else "-",
        "/".join(f"{value:.0f}" for value in row["peak_rss_mib_per_rank"]),
    )


def build_axes_report(data: StudyData) -> Report:
    """The table of every variant, the conclusion and the throughput plot."""
    result = axes_result(data.settings, data.records, data.header.get("machine", {}))
    plot_axes(result, data.directory / PLOT_FILE)
    rows = [axes_table_row(row) for row in result.rows()]
    config = result.config
    return Report(
        f"Axes of parallelism: {config.model} on {config.data}",
        [
            Section(
                "Every variant on the same cores",
                paragraphs=[
                    f"{result.train_samples:,} training and {result.val_samples:,} validation "
                    f"samples, batch {config.batch_size}, the same seed and data for every "
                    f"row; pipeline: {config.schedule} schedule, {config.num_microbatches} "
                    f"micro-batches, partition {config.partition}. samples/s: the median "
                    "step after the warm-up steps; R x T: ranks x threads; +-pts: "
                    "accuracy points vs serial; RSS: peak per process (MiB)."
                ],
                tables=[
                    Table(
                        (
                            "variant",
                            "axis",
                            "R x T",
                            "samples/s",
                            "speedup",
                            "val acc",
                            "+-pts",
                            "RSS MiB",
                        ),
                        rows,
                    )  # fmt: skip
                ],
                images=[Path(PLOT_FILE)],
            ),
            Section("Conclusion", paragraphs=conclude(result)),
        ],
    )
