"""CPU utilisation over time, sampled with psutil in a background thread of the master.

Each sample holds the utilisation of every core (percent, since the previous sample), their
mean, and the share of the machine used by this process and its descendants (the workers),
so that a run on a machine shared with others can tell its own load from theirs.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import psutil

__all__ = ["CpuMonitor", "CpuTrace"]


@dataclass(slots=True)
class CpuTrace:
    """The samples of one monitored run."""

    interval_s: float
    start_s: float
    """``time.perf_counter()`` when sampling started (the workers' logs use the same clock)."""
    times_s: list[float] = field(default_factory=list)
    """Seconds since ``start_s`` of each sample."""
    per_core: list[list[float]] = field(default_factory=list)
    """Percent busy of each core at each sample: [sample][core]."""
    total: list[float] = field(default_factory=list)
    """Mean percent over all cores at each sample."""
    process: list[float] = field(default_factory=list)
    """Percent of the whole machine used by this process tree (master + workers)."""

    @property
    def num_cores(self) -> int:
        return len(self.per_core[0]) if self.per_core else 0

    def summary(self, start_s: float | None = None, end_s: float | None = None) -> dict[str, Any]:
        """Means over the samples whose time (absolute perf_counter) lies in [start, end]."""
        keep = [
            index
            for index, offset in enumerate(self.times_s)
            if (start_s is None or self.start_s + offset >= start_s)
            and (end_s is None or self.start_s + offset <= end_s)
        ]
        if not keep:
            return {"samples": 0, "mean_total_percent": None, "mean_process_percent": None,
                    "mean_per_core_percent": None}  # fmt: skip
        cores = self.num_cores
        return {
            "samples": len(keep),
            "mean_total_percent": round(sum(self.total[i] for i in keep) / len(keep), 1),
            "mean_process_percent": round(sum(self.process[i] for i in keep) / len(keep), 1),
            "mean_per_core_percent": [
                round(sum(self.per_core[i][core] for i in keep) / len(keep), 1)
                for core in range(cores)
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval_s,
            "times_s": [round(value, 3) for value in self.times_s],
            "per_core": self.per_core,
            "total": self.total,
            "process": self.process,
        }


class CpuMonitor:
    """``with CpuMonitor(0.25) as monitor: ...`` then ``monitor.trace``; interval 0 = off."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.trace = CpuTrace(interval_s=interval_s, start_s=time.perf_counter())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._processes: dict[int, psutil.Process] = {}
        self._cpu_count = psutil.cpu_count() or 1

    def _tree_percent(self) -> float:
        me = psutil.Process(os.getpid())
        try:
            members = [me, *me.children(recursive=True)]
        except psutil.Error:
            members = [me]
        busy = 0.0
        for member in members:
            process = self._processes.setdefault(member.pid, member)
            with contextlib.suppress(psutil.Error):
                busy += process.cpu_percent(None)  # percent of one core, since the last call
        return busy / self._cpu_count

    def _run(self) -> None:
        psutil.cpu_percent(None, percpu=True)  # the first call only sets the reference point
        self._tree_percent()
        while not self._stop.wait(self.interval_s):
            per_core = [round(value, 1) for value in psutil.cpu_percent(None, percpu=True)]
            self.trace.times_s.append(time.perf_counter() - self.trace.start_s)
            self.trace.per_core.append(per_core)
            self.trace.total.append(round(sum(per_core) / max(1, len(per_core)), 1))
            self.trace.process.append(round(self._tree_percent(), 1))

    def start(self) -> CpuMonitor:
        self.trace = CpuTrace(interval_s=self.interval_s, start_s=time.perf_counter())
        if self.interval_s > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="parnn-cpu-monitor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> CpuTrace:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        return self.trace

    def __enter__(self) -> CpuMonitor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
