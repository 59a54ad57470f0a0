"""Run a pipeline study: open (or resume) its results directory, measure every unfinished
cell, render the report.

    outcome = run_study("schemes", settings, cells, spec_of, out_dir, measure=engine)

Every study module builds its cells and the :class:`~parnn.bench.studies.runs.RunSpec` of
each, and leaves the rest here, so that the three studies store, resume and report alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parnn.bench.cells import Cell, CellExecutor, StudyStore, run_here
from parnn.bench.report import ReportBuilder, render_study
from parnn.bench.studies.runs import Measure, Predict, RunSpec, measure_cell
from parnn.bench.studies.settings import RunSettings

__all__ = ["StudyOutcome", "run_study"]


@dataclass(frozen=True, slots=True)
class StudyOutcome:
    """What a study run left behind."""

    kind: str
    directory: Path
    header: Mapping[str, Any]
    """study.json: kind, settings, machine facts."""
    records: Sequence[Mapping[str, Any]]
    """Every cell's record, in cell order."""
    measured_now: int
    """Cells measured by this call (the others were finished before: resumed)."""
    report_markdown: Path | None
    report_html: Path | None

    @property
    def resumed(self) -> int:
        return len(self.records) - self.measured_now

    @property
    def failed(self) -> list[Mapping[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]


def run_study(
    kind: str,
    settings: RunSettings,
    cells: Sequence[Cell],
    spec_of: Callable[[Cell], RunSpec],
    directory: str | Path,
    *,
    measure: Measure,
    predict: Predict | None = None,
    quiet: bool = False,
    render: bool = True,
    report: ReportBuilder | None = None,
    cluster: Any = None,
) -> StudyOutcome:
    """Measure every cell of ``cells`` not yet in ``directory`` and render the report.

    Re-running in the same directory with the same settings skips the finished cells;
    other settings are refused (see :class:`~parnn.bench.cells.StudyStore`). With a
    ``cluster`` (see :class:`~parnn.bench.cluster.DaskCells`) every cell is one Dask task
    needing a core per stage and thread; the records are the same as here.
    """
    store = StudyStore(directory)
    header = store.open(kind, settings.to_dict())
    todo = {cell.id for cell in cells} - store.finished_ids()
    chosen_predict = predict if settings.predict else None

    def measure_one(cell: Cell) -> dict[str, Any]:
        return measure_cell(
            spec_of(cell),
            measure,
            repeats=settings.repeats,
            isolate_repeats=settings.isolate_repeats,
            predict=chosen_predict,
        )

    executor: CellExecutor = run_here
    if cluster is not None:
        from parnn.bench.cluster import DaskCells

        def cores(cell: Cell) -> int:
            spec = spec_of(cell)
            return spec.num_ranks * spec.threads

        executor = DaskCells(cluster, cores=cores)
    records = store.run(
        cells, measure_one, description=f"study {kind}", quiet=quiet, executor=executor
    )
    measured_now = sum(1 for record in records if record["cell"] in todo)
    markdown = html = None
    if render and records and report is not None:
        markdown, html = render_study(store.directory, report)
    return StudyOutcome(
        kind=kind,
        directory=store.directory,
        header=header,
        records=records,
        measured_now=measured_now,
        report_markdown=markdown,
        report_html=html,
    )
