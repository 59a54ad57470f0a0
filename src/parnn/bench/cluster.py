"""A study's cells on a Dask cluster: one task per cell, each declaring the cores it needs.

    executor = DaskCells("local:2", cores=lambda cell: 2)
    StudyStore(out).run(cells, measure, executor=executor)

The cells go through K-fold's executor (:class:`parnn.jobs.dask_executor.DaskPool`): the
same connection (a scheduler address, its ``scheduler.json``, or ``local[:N]`` for a
``LocalCluster`` here), the same per-task resource (``resources={"cores": n}``: a cell
whose pipeline has ``p`` ranks of ``t`` threads needs ``p * t``), the same pinning (the
task claims ``n`` free cores of its host and the cell's processes run on those), the same
retries of a task whose worker died. Each finished cell comes back to this process,
which appends its record to the study's store at once, so ``--resume`` skips it whichever
executor ran it. A cell that fails outside the study's own error handling (its worker
died past Dask's retries, an unexpected exception) stops the study after the others
finish, naming the cells; re-running retries them.

The cells start processes (the pipeline's ranks), so workers must not be daemonic: a
``LocalCluster`` started here is set up so; workers started by hand need
``DASK_DISTRIBUTED__WORKER__DAEMON=False`` (docs/cluster.md).
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from parnn.bench.cells import Cell, Done, Measure, measure_timed
from parnn.errors import ParnnError, ParnnWarning

__all__ = ["CellsFailedError", "DaskCells", "run_cell_job"]

_PRELOAD = ("torch", "parnn.pipeline.worker", "parnn.bench.studies.runs")


class CellsFailedError(ParnnError):
    """Cells of a study failed on the cluster; the others are recorded."""


def run_cell_job(measure: Measure, cell: Cell, reporter: Any) -> dict[str, Any]:
    """The job function of one cell, in a Dask task (see
    :func:`parnn.jobs.dask_task.run_task`)."""
    if multiprocessing.current_process().daemon:
        raise ParnnError(
            "this Dask worker is daemonic and cannot start the cell's processes: start the "
            "workers with DASK_DISTRIBUTED__WORKER__DAEMON=False (docs/cluster.md)"
        )
    return {"record": measure_timed(measure, cell)}


class DaskCells:
    """Runs a study's cells on ``cluster``; ``cores(cell)`` is the cores a cell needs."""

    def __init__(
        self,
        cluster: Any,
        *,
        cores: Callable[[Cell], int],
        preload: Sequence[str] = _PRELOAD,
    ) -> None:
        self.cluster = cluster
        self.cores = cores
        self.preload = tuple(preload)
        self.facts: dict[str, Any] = {}

    def __call__(self, cells: Sequence[Cell], measure: Measure, done: Done) -> None:
        from parnn.jobs.dask_executor import DaskPool

        by_id = {cell.id: cell for cell in cells}
        pool = DaskPool(
            run_cell_job,
            measure,
            self.cluster,
            threads=max(self.cores(cell) for cell in cells),
            preload=self.preload,
            threads_of=self.cores,
            worker_children=True,
        )
        failed: list[str] = []

        def on_event(event: Any) -> None:
            if event.kind == "finished":
                result = event.result or {}
                for note in result.get("warnings", []):  # e.g. not pinned: too few free cores
                    warnings.warn(f"cell {event.key}: {note}", ParnnWarning, stacklevel=2)
                done(by_id[event.key], dict(result["record"]))
            elif event.kind == "failed":
                failed.append(f"{event.key} ({event.error})")

        pool.prepare()
        try:
            pool.run([(cell.id, cell) for cell in cells], on_event)
        finally:
            self.facts = pool.session_facts()
            pool.close()
        if failed:
            raise CellsFailedError(
                f"{len(failed)} of {len(cells)} cells failed on the cluster: "
                f"{'; '.join(failed)}; the others are recorded: run the same command again "
                "to retry only these"
            )
