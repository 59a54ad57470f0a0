"""``parnn report DIR``: the one report renderer. It reads which study a results directory
holds from its stored settings (``study.json``'s ``kind``; a k-fold run's ``kfold.json``)
and renders ``report.md`` and ``report.html`` with that study's builder, from the results
alone (no re-run).

This module sits above the studies (it names every one); the studies and
:mod:`parnn.bench.report` know nothing of it, so nothing imports in a circle.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from parnn.bench.cells import STUDY_FILE, StudyStore
from parnn.bench.report import ReportBuilder, render_study
from parnn.errors import CheckpointError

__all__ = ["REPORTS", "render_report", "report_builder", "report_kinds"]

REPORTS: dict[str, str] = {
    "schemes": "parnn.bench.studies.schemes_report:build_schemes_report",
    "microbatches": "parnn.bench.studies.microbatches_report:build_microbatches_report",
    "scaling": "parnn.bench.studies.scaling_report:build_scaling_report",
    "demo": "parnn.bench.studies.demo_report:build_demo_report",
    "batch-scaling": "parnn.bench.studies.batch_scaling_report:build_batch_scaling_report",
    "axes": "parnn.bench.studies.axes_report:build_axes_report",
    "dp-compare": "parnn.bench.studies.compare_report:build_compare_report",
    "pipedream": "parnn.bench.studies.pipedream_report:build_pipedream_report",
}
"""Study kind -> its report builder ('module:function', imported when needed)."""

KFOLD_FILE = "kfold.json"


def report_kinds() -> tuple[str, ...]:
    """Every study kind ``parnn report`` renders (plus a k-fold run's directory)."""
    return tuple(sorted(REPORTS))


def report_builder(kind: str) -> ReportBuilder:
    """The report builder of study ``kind``."""
    if kind not in REPORTS:
        raise CheckpointError(
            f"no report for a study of kind {kind!r}; known kinds: {', '.join(report_kinds())}"
        )
    module, _, name = REPORTS[kind].partition(":")
    builder: ReportBuilder = getattr(importlib.import_module(module), name)
    return builder


def render_report(directory: str | Path) -> tuple[Path, Path]:
    """Render ``report.md`` and ``report.html`` of whatever study ``directory`` holds."""
    directory = Path(directory)
    if not (directory / STUDY_FILE).exists() and (directory / KFOLD_FILE).exists():
        from parnn.bench.kfold_report import render_kfold_report

        return render_kfold_report(directory)
    kind = str(StudyStore(directory).header().get("kind"))
    if kind not in REPORTS:
        raise CheckpointError(
            f"{directory} holds a study of kind {kind!r} that has no report; "
            f"known kinds: {', '.join(report_kinds())}"
        )
    return render_study(directory, report_builder(kind))
