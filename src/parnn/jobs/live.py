"""The live view of a job pool: one bar per running job, and an overall bar with ETA.

    parallel  3/20 jobs ━━━━━━━━━━╸━━━━━━━━━━━  31%  0:00:12 eta 0:00:26  2 running
    w0 vgg16/cosine/fold2 ━━━━━━╸━━━━━━━━━━━━  45/90 0:00:04 eta 0:00:04  loss 0.4121
    w1 lenet5/warm/fold0  ━━━━━━━━━━━━━━╸━━━━  70/90 0:00:01 eta 0:00:00  loss 0.2107

The overall bar counts estimated work (each job's cost estimate, spread over its steps),
not jobs or steps, so that its ETA holds when long and short jobs mix. Drawn on standard
error; ``quiet`` draws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from parnn.jobs.pool import PoolEvent
from parnn.jobs.spec import JobSpec
from parnn.progress import stderr_console

__all__ = ["LiveView"]


class LiveView:
    """Follows :class:`~parnn.jobs.pool.PoolEvent` s of ``jobs`` (keyed by job id)."""

    def __init__(self, jobs: Sequence[JobSpec], *, title: str, quiet: bool = False) -> None:
        self.jobs = {job.job_id: job for job in jobs}
        self.title = title
        self.quiet = quiet
        self.done = 0
        self.failed = 0
        self._steps: dict[str, int] = {}  # steps each running job has reported
        self._tasks: dict[str, TaskID] = {}
        self._progress: Progress | None = None
        self._overall: TaskID | None = None

    def __enter__(self) -> LiveView:
        if self.quiet or not self.jobs:
            return self
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[postfix]}"),
            console=stderr_console,
            transient=False,
        )
        self._progress.start()
        total = sum(max(job.cost_s, 1e-9) for job in self.jobs.values())
        self._overall = self._progress.add_task(
            self.title, total=total, count=self._count(), postfix=""
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            for task in self._tasks.values():
                self._progress.remove_task(task)
            self._tasks.clear()
            self._progress.stop()
            self._progress = None

    def _count(self) -> str:
        return f"{self.done + self.failed}/{len(self.jobs)} jobs"

    def _work(self, job: JobSpec, steps: int) -> float:
        return max(job.cost_s, 1e-9) * steps / max(job.total_steps, 1)

    def update(self, event: PoolEvent) -> None:
        job = self.jobs.get(event.key)
        if job is None:
            return
        previous = self._steps.get(event.key, 0)
        if event.kind == "started":
            self._steps[event.key] = 0
        elif event.kind == "progress":
            self._steps[event.key] = event.step
        elif event.kind in ("finished", "failed"):
            self._steps.pop(event.key, None)
            if event.kind == "finished":
                self.done += 1
            else:
                self.failed += 1
        if self._progress is None or self._overall is None:
            return
        progress = self._progress
        if event.kind == "started":
            again = self._tasks.pop(event.key, None)  # run again elsewhere (a worker was lost)
            if again is not None:
                progress.remove_task(again)
            where = f"{event.host} w{event.worker}" if event.host else f"w{event.worker}"
            self._tasks[event.key] = progress.add_task(
                f"{where} {event.key}",
                total=job.total_steps,
                count=f"0/{job.total_steps}",
                postfix="",
            )
        elif event.kind == "progress":
            progress.advance(self._overall, self._work(job, event.step - previous))
            task = self._tasks.get(event.key)
            if task is not None:
                loss = f"loss {event.loss:.4f}" if event.loss is not None else ""
                progress.update(
                    task,
                    completed=event.step,
                    count=f"{event.step}/{job.total_steps}",
                    postfix=loss,
                )
        else:
            progress.advance(self._overall, self._work(job, job.total_steps - previous))
            task = self._tasks.pop(event.key, None)
            if task is not None:
                progress.remove_task(task)
        running = len(self._steps)
        failed = f", {self.failed} failed" if self.failed else ""
        progress.update(self._overall, count=self._count(), postfix=f"{running} running{failed}")
