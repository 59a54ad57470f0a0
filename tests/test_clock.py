"""The start of a process on the clock the ranks share (startup_s of pipeline and dp)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from parnn.clock import process_started_s, startup_s


def test_a_fresh_process_started_just_before_it_asks() -> None:
    # A new interpreter reads its own start: the age is the interpreter's start-up (tens of
    # milliseconds on an idle machine), never negative, and not the machine's uptime.
    code = (
        "import time; from parnn.clock import process_started_s; "
        "print(time.perf_counter() - process_started_s())"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    age_s = float(output.stdout)
    assert 0.0 <= age_s < 30.0


def test_startup_counts_from_the_process_start() -> None:
    started = process_started_s()
    assert started <= time.perf_counter()
    later = time.perf_counter() + 2.0
    assert startup_s(later) == pytest.approx(later - started, abs=0.05)
    assert startup_s(started - 5.0) == 0.0  # a step before the start is clamped
