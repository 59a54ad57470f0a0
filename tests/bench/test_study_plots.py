"""The studies' plots: PNG files with the lines, marks and bars drawn on them."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from parnn.bench.studies.plots import Mark, Panel, Series, save_panels, save_stage_bars


def _pixels(path: Path) -> np.ndarray:
    return (plt.imread(path)[..., :3] * 255).round().astype(np.int16)  # (H, W, 3)


def _count(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 30) -> int:
    return int((np.abs(pixels - np.array(rgb)).sum(axis=-1) < tolerance).sum())


def test_panels_draw_measured_predicted_ideal_and_marks(tmp_path: Path) -> None:
    xs = [1, 2, 4, 8]
    path = save_panels(
        tmp_path / "plot.png",
        [
            Panel(
                "times",
                "m",
                "ms",
                [
                    Series("measured", xs, [4.0, 3.0, 2.5, 3.0], errors=[0.1] * 4),
                    Series("simulator", xs, [3.8, 2.9, None, 2.9], style="predicted"),
                    Series("ideal", xs, [4.0, 2.0, 1.0, 0.5], style="ideal"),
                ],
                logx=True,
                xticks=xs,
                marks=[Mark(4, 2.5, "optimum m=4")],
            ),
            Panel(
                "auto",
                "b",
                "ms",
                [Series("auto", xs, [1, 2, 3, 4], style="highlight")],
                vlines=[(2.0, "2 cores")],
            ),
        ],
        title="two panels",
    )
    pixels = _pixels(path)
    assert pixels.shape[1] > pixels.shape[0] * 2  # side by side
    assert _count(pixels, (0x1F, 0x77, 0xB4)) > 200  # the measured line (C0)
    assert _count(pixels, (255, 215, 0), tolerance=60) > 50  # the gold star of the optimum
    assert _count(pixels, (0, 0, 0)) > 300  # the thick black highlighted series


def test_stage_bars_stack_compute_and_comm(tmp_path: Path) -> None:
    path = save_stage_bars(
        tmp_path / "bars.png",
        ["m=1", "m=2"],
        [[0.010, 0.020], [0.012, 0.022]],
        [[0.001, 0.002], [0.002, 0.004]],
        title="stages",
        xlabel="m",
    )
    pixels = _pixels(path)
    assert _count(pixels, (0x1F, 0x77, 0xB4)) > 500  # stage 0's solid compute bars
    assert _count(pixels, (0xFF, 0x7F, 0x0E)) > 500  # stage 1's


def test_bad_series_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 xs, 1 ys"):
        Series("s", [1, 2], [1.0])
    with pytest.raises(ValueError, match="unknown series style"):
        Series("s", [1], [1.0], style="dotted")
    with pytest.raises(ValueError, match="at least one panel"):
        save_panels(tmp_path / "none.png", [])
