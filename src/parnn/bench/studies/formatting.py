"""Numbers as the study reports print them, and the record fields they read.

Reports read only ``study.json`` and ``cells.jsonl``; these helpers pull the common
fields out of a cell record (see :func:`parnn.bench.studies.runs.measure_cell`) and
format them for tables: milliseconds with the spread and the runs kept, bytes in binary
units, percentages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from parnn.bench.report import Section, Table

__all__ = [
    "counts_text",
    "mean_s",
    "ms",
    "ms_spread",
    "nbytes",
    "percent",
    "predicted_s",
    "settings_section",
    "size_note",
    "stage_sum",
    "stages_text",
    "wait_s",
    "std_s",
]


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds with 3 significant digits ('12.3', '0.456', '1234')."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    value = seconds * 1e3
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def mean_s(record: Mapping[str, Any], name: str = "step_time_s") -> float:
    """The kept runs' mean of a summarised field of a record."""
    return float(record[name]["mean"])


def std_s(record: Mapping[str, Any], name: str = "step_time_s") -> float:
    return float(record[name]["std"])


def predicted_s(record: Mapping[str, Any], name: str = "step_time_s") -> float | None:
    """The simulator's value for a record, None when it made no prediction."""
    prediction = record.get("prediction")
    if not prediction:
        return None
    return float(prediction[name])


def _decimals(milliseconds: float) -> int:
    size = abs(milliseconds)
    return 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3


def ms_spread(record: Mapping[str, Any], name: str = "step_time_s") -> str:
    """'12.3 ± 0.4 (4/5)': mean ± std of the kept runs (in the mean's precision), and
    kept / measured."""
    summary = record[name]
    mean, std = float(summary["mean"]) * 1e3, float(summary["std"]) * 1e3
    places = _decimals(mean)
    return f"{mean:.{places}f} ± {std:.{places}f} ({summary['kept']}/{summary['num_runs']})"


def counts_text(counts: Sequence[int]) -> str:
    """Units per stage as '[5, 4, 4, 3]' (no '|': it would split a Markdown table cell)."""
    return "[" + ", ".join(str(c) for c in counts) + "]"


def stage_sum(record: Mapping[str, Any], name: str) -> float:
    """A per-stage field of a record summed over its stages (e.g. 'forward_s')."""
    return sum(float(stage[name]) for stage in record["stages"])


def wait_s(stage: Mapping[str, Any]) -> float:
    """A stage's communication wait per step: blocked sending or receiving."""
    return float(stage["wait_s"])


def stages_text(count: int) -> str:
    """'1 stage', '4 stages'."""
    return f"{count} stage" if count == 1 else f"{count} stages"


def nbytes(count: float) -> str:
    """Bytes in binary units: '512 B', '1.5 KiB', '3.0 MiB'."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def percent(fraction: float | None) -> str:
    if fraction is None or not math.isfinite(fraction):
        return "—"
    return f"{100 * fraction:.1f} %"


def _setting_text(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if value and all(isinstance(v, int) for v in value) and len(value) == 3:
            return "x".join(str(v) for v in value)
        return ", ".join(str(v) for v in value)
    return str(value)


def settings_section(
    settings: Mapping[str, Any], notes: Sequence[str] = (), *, title: str = "Settings"
) -> Section:
    """The study's settings as a table, with notes on what the defaults shrink."""
    rows = [(str(name), _setting_text(value)) for name, value in settings.items()]
    return Section(title, paragraphs=list(notes), tables=[Table(("setting", "value"), rows)])


def size_note(settings: Mapping[str, Any], records: Sequence[Mapping[str, Any]] = ()) -> str:
    """Says how every cell was measured, when the input is smaller than the papers' and how
    to restore it."""
    shape = "x".join(str(s) for s in settings.get("input_shape", ()))
    repeats = settings.get("repeats")
    steps = settings.get("steps")
    launches = settings.get("isolate_repeats") or any(
        r.get("repeats_from") == "launches" for r in records
    )
    where = "each in a fresh launch" if launches else "in one launch per cell"
    note = (
        f"Inputs are synthetic {shape} samples; every cell ran {repeats} repeats of {steps} "
        f"timed step(s) {where}, after {settings.get('warmup_steps')} untimed warm-up "
        "step(s). Times are the mean of the repeats kept by the ±1.5σ outlier rule, with "
        "their standard deviation and (kept/measured)."
    )
    if shape != "3x224x224":
        note += (
            " The papers used 3x224x224 inputs: pass --input 3x224x224 (and more --steps "
            "and --repeats) to restore their sizes."
        )
    return note
