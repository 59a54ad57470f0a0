"""`parnn report DIR` on a k-fold run: its accuracy table, timing and plots, drawn from the
run's records alone (a recorded run from benchmarks/kfold/)."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from parnn.cli import cli
from parnn.jobs import KFoldResults

RUN = Path(__file__).parents[2] / "benchmarks" / "kfold" / "results" / "parallel_vs_serial"


def test_a_kfold_run_renders_its_report_and_plots(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    for plot in ("cpu.png", "timeline.png"):
        (run / plot).unlink()
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    for plot in ("cpu.png", "timeline.png"):
        assert (run / plot).read_bytes()[:4] == b"\x89PNG"
    report = (run / "report.md").read_text()
    assert report.startswith("# K-fold cross-validation")
    assert "![cpu](cpu.png)" in report and "![timeline](timeline.png)" in report
    results = KFoldResults.load(run)
    for row in results.summary():  # one table row per model and LR schedule
        assert f"| {row['model']} | {row['scheduler']} |" in report
    assert "<h2>Timing</h2>" in (run / "report.html").read_text()
