"""When this process started, on the clock the ranks share.

``time.perf_counter`` is CLOCK_MONOTONIC on Linux: one clock for every process of a
machine, which the runtimes already use to line up the ranks' timings. The kernel records
each process's start in clock ticks since boot (field 22 of ``/proc/self/stat``, 10 ms);
:func:`process_started_s` puts it on that shared clock, so that
``first_step_s - process_started_s()`` is what the user waited: from the command's start
(interpreter, imports, data, process start-up) to the first training step.
(``psutil``'s ``create_time`` adds the boot time, which Linux gives in whole seconds: up to
a second off.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

__all__ = ["process_started_s", "startup_s"]


def process_started_s() -> float:
    """This process's start, in ``time.perf_counter`` seconds."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        age_s = time.clock_gettime(time.CLOCK_BOOTTIME) - started_since_boot
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux
        age_s = time.time() - psutil.Process().create_time()
    return time.perf_counter() - age_s


def startup_s(first_step_s: float) -> float:
    """Seconds from this process's start to ``first_step_s`` (a ``perf_counter`` time,
    possibly taken by another process of this machine), rounded to the millisecond."""
    return round(max(0.0, first_step_s - process_started_s()), 3)
