from __future__ import annotations

import math

import pytest

from parnn.bench.stats import summarize


def test_outlier_beyond_one_and_a_half_sigma_is_dropped() -> None:
    summary = summarize([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 5.0])
    assert summary.num_runs == 7
    assert summary.kept == 6
    assert 5.0 not in summary.values
    assert summary.mean == pytest.approx(1.0)
    assert summary.maximum == pytest.approx(1.1)


def test_runs_within_the_band_are_all_kept() -> None:
    summary = summarize([2.0, 2.2, 1.8, 2.1])
    assert summary.kept == summary.num_runs == 4
    assert summary.median == pytest.approx(2.05)
    assert summary.std == pytest.approx(0.1707825128)  # sample std, ddof=1


def test_one_or_two_runs_are_kept_whatever_they_are() -> None:
    assert summarize([3.0]).std == 0.0
    two = summarize([1.0, 100.0])
    assert two.kept == 2
    assert math.isclose(two.mean, 50.5)


def test_identical_runs_have_no_spread() -> None:
    summary = summarize([0.5] * 5)
    assert summary.kept == 5
    assert summary.std == 0.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        summarize([])
    with pytest.raises(ValueError, match="NaN"):
        summarize([1.0, float("nan")])
