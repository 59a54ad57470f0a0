"""The studies' plots, drawn with matplotlib's Agg canvas (no display, no pyplot state).

A plot is one or more :class:`Panel` side by side, each a set of :class:`Series`:
measured points (solid, with error bars), the simulator's predictions (dashed, hollow
markers), ideal lines (dotted grey) and one highlighted series (thick black, e.g. the
``auto`` partition). Marks annotate single points (the optimum number of micro-batches),
vertical lines name a threshold (the usable cores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

__all__ = ["Mark", "Panel", "Series", "save_panels", "save_stage_bars"]

STYLES = ("measured", "predicted", "ideal", "highlight")


@dataclass(frozen=True, slots=True)
class Series:
    """One line: ``ys[i]`` at ``xs[i]`` (None: no point there), optional ± ``errors``."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    errors: Sequence[float] | None = None
    style: str = "measured"
    color: str | None = None

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown series style {self.style!r}; valid: {STYLES}")
        if len(self.xs) != len(self.ys):
            raise ValueError(f"series {self.label!r}: {len(self.xs)} xs, {len(self.ys)} ys")


@dataclass(frozen=True, slots=True)
class Mark:
    """An annotated point, e.g. the optimum: a star at (x, y) with ``label`` beside it."""

    x: float
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Panel:
    """One set of axes."""

    title: str
    xlabel: str
    ylabel: str
    series: Sequence[Series]
    logx: bool = False
    """Base-2 logarithmic x axis (batch sizes, micro-batches)."""
    logy: bool = False
    xticks: Sequence[float] | None = None
    """Ticks at exactly these x values (labelled as integers)."""
    vlines: Sequence[tuple[float, str]] = ()
    """Vertical lines (x, label)."""
    marks: Sequence[Mark] = field(default_factory=tuple)
    ymin_zero: bool = False


def _draw(axes: object, panel: Panel) -> None:
    from matplotlib.axes import Axes

    assert isinstance(axes, Axes)
    for series in panel.series:
        points = [(x, y) for x, y in zip(series.xs, series.ys, strict=True) if y is not None]
        if not points:
            continue
        xs = [float(x) for x, _ in points]
        ys = [float(y) for _, y in points]
        kwargs: dict[str, object] = {"label": series.label}
        if series.color is not None:
            kwargs["color"] = series.color
        if series.style == "measured":
            errors = None
            if series.errors is not None:
                errors = [
                    float(e) for e, y in zip(series.errors, series.ys, strict=True) if y is not None
                ]
            axes.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, linewidth=1.5, **kwargs)  # type: ignore[arg-type]
        elif series.style == "highlight":
            kwargs.setdefault("color", "black")
            axes.errorbar(
                xs,
                ys,
                yerr=series.errors,
                marker="s",
                capsize=3,
                linewidth=3,
                **kwargs,  # type: ignore[arg-type]
            )
        elif series.style == "predicted":
            axes.plot(xs, ys, linestyle="--", marker="o", markerfacecolor="none", **kwargs)  # type: ignore[arg-type]
        else:
            kwargs.setdefault("color", "grey")
            axes.plot(xs, ys, linestyle=":", linewidth=2, **kwargs)  # type: ignore[arg-type]
    for x, label in panel.vlines:
        axes.axvline(x, color="grey", linestyle="-.", linewidth=1, label=label)
    for mark in panel.marks:
        axes.plot(
            [mark.x],
            [mark.y],
            marker="*",
            markersize=18,
            color="gold",
            markeredgecolor="black",
            linestyle="none",
            zorder=5,
        )
        axes.annotate(
            mark.label,
            (mark.x, mark.y),
            textcoords="offset points",
            xytext=(12, 14),
            fontsize=9,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
        )
    if panel.logx:
        axes.set_xscale("log", base=2)
    if panel.logy:
        axes.set_yscale("log")
    if panel.xticks is not None:
        axes.set_xticks([float(x) for x in panel.xticks])
        axes.set_xticklabels([f"{x:g}" for x in panel.xticks])
        axes.xaxis.set_minor_locator(NullLocator())
    if panel.ymin_zero:
        axes.set_ylim(bottom=0)
    axes.set_title(panel.title)
    axes.set_xlabel(panel.xlabel)
    axes.set_ylabel(panel.ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)


def save_panels(
    path: str | Path,
    panels: Sequence[Panel],
    *,
    title: str | None = None,
    panel_size: tuple[float, float] = (6.4, 4.4),
    dpi: int = 100,
) -> Path:
    """Draw ``panels`` side by side into the PNG ``path``; returns it."""
    if not panels:
        raise ValueError("a plot needs at least one panel")
    width, height = panel_size
    figure = Figure(figsize=(width * len(panels), height), layout="constrained")
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, panel in zip(axes_list, panels, strict=True):
        _draw(axes, panel)
    if title:
        figure.suptitle(title)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=dpi, format="png")
    return target


def save_stage_bars(
    path: str | Path,
    groups: Sequence[str],
    compute_s: Sequence[Sequence[float]],
    comm_s: Sequence[Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str = "ms per step",
    dpi: int = 100,
) -> Path:
    """Grouped stacked bars: for each group (e.g. a number of micro-batches) one bar per
    stage, compute (solid) under communication (hatched). ``compute_s[g][s]`` in seconds,
    drawn in milliseconds."""
    if len(groups) != len(compute_s) or len(groups) != len(comm_s):
        raise ValueError("one row of compute and of comm per group")
    num_stages = max((len(row) for row in compute_s), default=0)
    figure = Figure(figsize=(max(6.4, 1.2 * len(groups) + 2), 4.4), layout="constrained")
    axes = figure.subplots()
    width = 0.8 / max(num_stages, 1)
    colors = [f"C{s % 10}" for s in range(num_stages)]
    for stage in range(num_stages):
        xs = [g + (stage - (num_stages - 1) / 2) * width for g in range(len(groups))]
        compute = [1e3 * row[stage] if stage < len(row) else 0.0 for row in compute_s]
        comm = [1e3 * row[stage] if stage < len(row) else 0.0 for row in comm_s]
        axes.bar(xs, compute, width, color=colors[stage], label=f"stage {stage} compute")
        axes.bar(
            xs,
            comm,
            width,
            bottom=compute,
            color="white",
            edgecolor=colors[stage],
            hatch="//",
            label=f"stage {stage} comm",
        )
    axes.set_xticks(list(range(len(groups))))
    axes.set_xticklabels(list(groups))
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=dpi, format="png")
    return target
