"""Render a simulated step: a timeline chart (PNG) and a Chrome trace (Perfetto).

One row per rank; forwards in blue, backwards in green, receives hatched grey, the
optimizer update in orange, each forward and backward box
labelled with its micro-batch (and chunk, for interleaved schedules) when it is wide
enough. The trace has one track per rank, in the same layout as the measured traces of
the pipeline runtime, so that the two open side by side in https://ui.perfetto.dev.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from parnn.partition.simulate import Simulation

__all__ = ["plot_timeline", "write_simulation_trace"]

_COLOURS = {
    "forward": "#4c78a8",
    "backward": "#54a24b",
    "backward-weight": "#b5d99c",
    "recv-forward": "#bbbbbb",
    "recv-backward": "#bbbbbb",
    "update": "#f58518",
}


def plot_timeline(
    simulation: Simulation, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Draw the simulated timeline to ``path`` (PNG) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    k = simulation.num_ranks
    scale, unit = (1e3, "ms") if simulation.step_time_s < 10 else (1.0, "s")
    origin = min((e.start_s for e in simulation.events), default=0.0)
    width = max(simulation.step_time_s * scale, 1e-9)
    figure, axes = plt.subplots(figsize=(12, 0.6 * k + 2.0))
    for event in simulation.events:
        start = (event.start_s - origin) * scale
        duration = event.duration_s * scale
        row = k - 1 - event.rank
        hatch = "///" if event.kind.startswith("recv") else None
        axes.broken_barh(
            [(start, duration)],
            (row + 0.1, 0.8),
            facecolors=_COLOURS[event.kind],
            edgecolor="white",
            linewidth=0.5,
            hatch=hatch,
        )
        if event.kind in ("forward", "backward", "backward-weight") and duration > width / 60:
            chunk = event.stage // k
            label = f"{event.microbatch}" + (f".{chunk}" if simulation.num_stages > k else "")
            axes.text(
                start + duration / 2,
                row + 0.5,
                label,
                ha="center",
                va="center",
                fontsize=7,
                color="white",
            )
    axes.set_yticks([k - 1 - r + 0.5 for r in range(k)])
    axes.set_yticklabels([f"rank {r}" for r in range(k)])
    axes.set_xlim(0, width)
    axes.set_ylim(0, k)
    axes.set_xlabel(f"time ({unit})")
    heading = title or (
        f"{simulation.schedule}, {simulation.num_ranks} ranks, m={simulation.num_microbatches}"
    )
    axes.set_title(
        f"{heading}: step {simulation.step_time_s * scale:.3g} {unit}, "
        f"bubble {simulation.bubble_fraction:.1%}"
    )
    axes.legend(
        handles=[
            Patch(facecolor=_COLOURS["forward"], label="forward"),
            Patch(facecolor=_COLOURS["backward"], label="backward"),
            Patch(facecolor=_COLOURS["recv-forward"], hatch="///", label="receive"),
            Patch(facecolor=_COLOURS["update"], label="optimizer update"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18 - 0.6 / (k + 1)),
        fontsize=8,
        ncols=4,
        frameon=False,
    )
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return target


def write_simulation_trace(
    simulation: Simulation,
    path: str | os.PathLike[str],
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the simulated timeline as a Chrome trace, one track per rank."""
    from parnn.trace import TraceRecorder, write_chrome_trace

    recorders = [
        TraceRecorder(track=rank, track_name=f"rank {rank}", process_name="simulated")
        for rank in range(simulation.num_ranks)
    ]
    for event in simulation.events:
        category = "comm" if event.kind.startswith("recv") else event.kind
        name = {"forward": "F", "backward": "B", "backward-weight": "W"}.get(event.kind, event.kind)
        label = "update" if event.kind == "update" else f"{name}{event.microbatch}"
        recorders[event.rank].add(
            label,
            category,
            event.start_s,
            event.duration_s,
            stage=event.stage,
            microbatch=event.microbatch,
        )
    info = {"schedule": simulation.schedule, "num_microbatches": simulation.num_microbatches}
    info.update(metadata or {})
    target = Path(path)
    write_chrome_trace(target, recorders, metadata=info)
    return target
