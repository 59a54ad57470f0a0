"""A study report's HTML page in a real headless browser: headings, tables and plots shown."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from _study_fakes import FakePipeline, FakePredictor

from parnn.bench.studies.microbatches import MicrobatchesSettings, run_microbatches_study


@pytest.mark.timeout(180)
def test_the_microbatches_page_shows_its_sections_and_plots(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    settings = MicrobatchesSettings(
        model="dummy16",
        input_shape=(1, 8, 8),
        num_ranks=(2,),
        microbatches=(1, 2, 4, 8),
        batch_size=16,
        partition="equal-load",
        repeats=2,
        steps=1,
    )
    outcome = run_microbatches_study(
        settings, tmp_path, measure=FakePipeline(), predict=FakePredictor(), quiet=True
    )
    assert outcome.report_html is not None
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*common, "--dump-dom", outcome.report_html.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    ).stdout
    assert "<h1>Micro-batches per step (GPipe study): dummy16</h1>" in dom
    for heading in ("Conclusions", "2 stages: times", "2 stages: partition efficiency", "Machine"):
        assert f"<h2>{heading}</h2>" in dom
    assert dom.count("<img ") == 3 and dom.count("<table>") >= 6
    shot = tmp_path / "screenshot.png"
    subprocess.run(
        [*common, "--window-size=1200,1600", f"--screenshot={shot}", outcome.report_html.as_uri()],
        capture_output=True,
        timeout=90,
        check=True,
    )
    pixels = (plt.imread(shot)[..., :3] * 255).round().astype(np.int16)  # (H, W, 3)
    assert pixels.std() > 10, "the screenshot is a blank page"
    # The first plot (times vs m) is decoded and drawn: its blue measured line is visible.
    blue = np.abs(pixels - np.array((0x1F, 0x77, 0xB4))).sum(axis=-1) < 30
    assert blue.sum() > 100, "the plot's line is not visible in the screenshot"
