"""Reports render from results alone; the HTML page is checked in a real headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from parnn.bench.cells import Cell, StudyStore
from parnn.bench.render import render_report
from parnn.bench.report import Report, Section, StudyData, Table, render_study
from parnn.errors import CheckpointError

PLOT_BLUE = (0x1F, 0x77, 0xB4)  # matplotlib's first line colour


def _toy_report(data: StudyData) -> Report:
    xs = [r["key"]["batch_size"] for r in data.records]
    ys = [r["time_s"] for r in data.records]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(xs, ys, linewidth=6, color="#1f77b4")
    axes.set_xlabel("batch size")
    figure.savefig(data.directory / "toy.png", dpi=80)
    plt.close(figure)
    rows = [(str(x), f"{y:.3f}") for x, y in zip(xs, ys, strict=True)]
    return Report(
        "Toy study",
        [
            Section(
                "Time per step",
                paragraphs=["Fastest at batch size 1."],
                tables=[Table(("batch size", "time (s)"), rows, caption="medians")],
                images=[Path("toy.png")],
            )
        ],
    )


def _toy_study(directory: Path) -> None:
    store = StudyStore(directory)
    store.open("toy-report", {"repeats": 1})
    cells = [Cell({"batch_size": b}) for b in (1, 2, 4)]
    store.run(cells, lambda cell: {"time_s": 0.5 * cell.key["batch_size"]}, quiet=True)


def test_markdown_and_html_render_from_results_alone(tmp_path: Path) -> None:
    _toy_study(tmp_path)
    markdown_path, html_path = render_study(tmp_path, _toy_report)
    markdown = markdown_path.read_text()
    assert markdown.startswith("# Toy study")
    assert "| batch size | time (s) |" in markdown
    assert "| 4 | 2.000 |" in markdown
    assert "![toy](toy.png)" in markdown
    assert "## Machine" in markdown and "torch" in markdown
    page = html_path.read_text()
    assert "<h2>Time per step</h2>" in page
    assert re.search(r'<img alt="toy" src="data:image/png;base64,[A-Za-z0-9+/=]{100,}">', page)


def test_a_directory_without_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="holds no study"):
        render_report(tmp_path)
    StudyStore(tmp_path).open("no-such-kind", {})
    with pytest.raises(CheckpointError, match="no report"):
        render_report(tmp_path)


@pytest.mark.timeout(120)
def test_the_html_page_shows_its_headings_and_plots_in_a_real_browser(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    _toy_study(tmp_path)
    _, html_path = render_study(tmp_path, _toy_report)
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*common, "--dump-dom", html_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    ).stdout
    assert "<h1>Toy study</h1>" in dom
    assert "<h2>Time per step</h2>" in dom and "<h2>Machine</h2>" in dom
    shot = tmp_path / "screenshot.png"
    subprocess.run(
        [*common, "--window-size=1000,900", f"--screenshot={shot}", html_path.as_uri()],
        capture_output=True,
        timeout=90,
        check=True,
    )
    pixels = (plt.imread(shot)[..., :3] * 255).round().astype(np.int16)  # (H, W, 3)
    assert pixels.std() > 10, "the screenshot is a blank page"
    # The embedded plot was decoded and drawn: its thick blue line is on the screen.
    blue = np.abs(pixels - np.array(PLOT_BLUE)).sum(axis=-1) < 30
    assert blue.sum() > 200, "the plot's line is not visible in the screenshot"
