"""Where each rank runs: its cores and its threads."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence

import torch

from parnn.errors import ConfigError, ParnnWarning
from parnn.launch.config import usable_cores
from parnn.launch.forkserver import THREAD_ENV_VARS

__all__ = ["THREAD_ENV_VARS", "pin_current_process", "plan_cores", "warn_if_oversubscribed"]


def plan_cores(
    num_processes: int, threads_per_process: int, cores: Sequence[int]
) -> list[tuple[int, ...]]:
    """The cores of each rank: consecutive blocks of ``threads_per_process`` cores, wrapping
    round-robin when there are fewer cores than processes x threads.

    >>> plan_cores(3, 1, (0, 1))
    [(0,), (1,), (0,)]
    >>> plan_cores(2, 2, (0, 1, 2, 3))
    [(0, 1), (2, 3)]
    """
    count = len(cores)
    return [
        tuple(
            sorted(
                {
                    cores[(rank * threads_per_process + i) % count]
                    for i in range(threads_per_process)
                }
            )
        )
        for rank in range(num_processes)
    ]


def pin_current_process(cores: Sequence[int] | None, threads: int) -> None:
    """Restrict this process to ``cores`` (None: leave the affinity alone) and run torch's
    intra-op work on ``threads`` threads (inter-op work on one)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads={threads!r}: must be an integer >= 1; e.g. threads=1")
    if cores is not None:
        usable = usable_cores()
        if not cores or any(core not in usable for core in cores):
            raise ConfigError(
                f"cores={tuple(cores)}: must be CPU ids this process may use "
                f"(usable: {', '.join(map(str, usable))})"
            )
        os.sched_setaffinity(0, cores)
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel work
        torch.set_num_interop_threads(1)


def warn_if_oversubscribed(num_processes: int, threads: int, num_cores: int) -> None:
    if num_processes * threads > num_cores:
        thread_word = "thread" if threads == 1 else "threads"
        warnings.warn(
            f"oversubscribed: {num_processes} processes x {threads} {thread_word} on "
            f"{num_cores} usable cores; expect slower, noisier timings",
            ParnnWarning,
            stacklevel=3,
        )
