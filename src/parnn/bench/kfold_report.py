"""A k-fold run's report, rendered from its directory alone (``kfold.json``, ``jobs.jsonl``,
``sessions.jsonl``; see :mod:`parnn.jobs.store`): the accuracy per model and LR schedule,
the timing per mode, and the CPU and timeline plots (:mod:`parnn.bench.kfold_plots`)."""

from __future__ import annotations

from pathlib import Path

from parnn.bench.kfold_plots import save_kfold_plots
from parnn.bench.report import Report, Section, Table, write_report
from parnn.jobs.results import KFoldResults, format_cell
from parnn.jobs.store import RunStore
from parnn.results import read_json

__all__ = ["build_kfold_report", "render_kfold_report"]


def build_kfold_report(results: KFoldResults) -> Report:
    """The report of a loaded k-fold run; draws its plots into the run's directory."""
    modes = results.modes or ["parallel"]
    columns = ["model", "LR schedule", *[f"{mode} accuracy" for mode in modes]]
    rows = []
    for row in results.summary():
        cells = [row["model"], row["scheduler"], *(format_cell(row[mode]) for mode in modes)]
        rows.append(cells)
    timing = results.timing()
    timing_rows = [
        (
            mode,
            f"{timing[mode]['wall_s']:.1f}",
            f"{timing[mode]['job_time_s']:.1f}",
            str(timing[mode]["jobs_ok"]),
            str(timing[mode]["jobs_failed"]),
            str(timing[mode]["workers"]),
        )
        for mode in modes
        if timing.get(mode)
    ]
    paragraphs = [
        f"{results.settings.get('folds')} folds of {len(results.models)} model(s) x "
        f"{len(results.schedulers)} LR schedule(s); accuracy: mean ± std over the folds."
    ]
    if timing.get("speedup") is not None:
        paragraphs.append(f"Parallel over serial wall time: {timing['speedup']:.2f}x.")
    images: list[Path] = []
    if results.out_dir is not None:
        images = [Path(path).relative_to(results.out_dir) for path in
                  save_kfold_plots(results).values()]  # fmt: skip
    failed = [(j.mode, j.job_id, j.error or "") for j in results.failed]
    sections = [
        Section(
            "Accuracy",
            paragraphs=paragraphs,
            tables=[Table(columns, rows)],
        ),
        Section(
            "Timing",
            tables=[
                Table(("mode", "wall s", "job s", "jobs ok", "failed", "workers"), timing_rows)
            ],  # fmt: skip
            images=images,
        ),
    ]
    if failed:
        sections.append(Section("Failed jobs", tables=[Table(("mode", "job", "error"), failed)]))
    return Report("K-fold cross-validation", sections)


def render_kfold_report(directory: str | Path) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` (and the plots) of the k-fold run in ``directory``."""
    directory = Path(directory)
    results = KFoldResults.load(directory)
    machine = read_json(RunStore(directory).run_file).get("machine", {})
    return write_report(directory, build_kfold_report(results), machine)
