"""What a data-parallel run produced: the loss against wall time and samples, throughput,
per-rank facts, CPU utilisation and the final accuracy; built from the workers' logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parnn.data_parallel.config import AVERAGING_ENGINES, DataParallelConfig
from parnn.data_parallel.loop import StepLog
from parnn.monitor import CpuTrace
from parnn.train import EvalResult

__all__ = ["DataParallelResult", "LossCurve", "merge_logs"]


@dataclass(slots=True)
class LossCurve:
    """Training loss after each step, against seconds since training began and samples seen
    (all ranks together). A synchronous step is one point (the mean over the global batch,
    at the time its slowest rank finished); each Hogwild update is a point of its own."""

    time_s: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.loss)

    def tail_loss(self, fraction: float = 0.1) -> float | None:
        """Mean loss over the last ``fraction`` of the points (at least one)."""
        if not self.loss:
            return None
        count = max(1, int(len(self.loss) * fraction))
        return sum(self.loss[-count:]) / count

    def bucketed(self, max_points: int = 200) -> LossCurve:
        """At most ``max_points`` points: the mean loss of each run of consecutive points,
        at the time and samples of its last point."""
        size = max(1, -(-len(self.loss) // max_points))
        if size == 1:
            return LossCurve(list(self.time_s), list(self.samples), list(self.loss))
        out = LossCurve()
        for start in range(0, len(self.loss), size):
            chunk = self.loss[start : start + size]
            out.time_s.append(self.time_s[start + len(chunk) - 1])
            out.samples.append(self.samples[start + len(chunk) - 1])
            out.loss.append(sum(chunk) / len(chunk))
        return out

    def to_dict(self, max_points: int = 200) -> dict[str, list[Any]]:
        curve = self.bucketed(max_points)
        return {
            "time_s": [round(value, 4) for value in curve.time_s],
            "samples": curve.samples,
            "loss": [round(value, 5) for value in curve.loss],
        }


def merge_logs(logs: list[StepLog], *, synchronous: bool) -> tuple[LossCurve, float, float]:
    """The loss curve of all ranks, and the (start, end) perf_counter time of training."""
    start = min(log.start_s for log in logs)
    end = max(log.end_s for log in logs)
    events: list[tuple[float, float, int]] = []  # (end time, loss sum, samples)
    if synchronous:
        steps = min(len(log.step_end_s) for log in logs)
        for step in range(steps):
            events.append(
                (
                    max(log.step_end_s[step] for log in logs),
                    sum(log.loss_sums[step] for log in logs),
                    sum(log.samples[step] for log in logs),
                )
            )
    else:
        for log in logs:
            events += zip(log.step_end_s, log.loss_sums, log.samples, strict=True)
        events.sort()
    curve = LossCurve()
    seen = 0
    for end_s, loss_sum, samples in events:
        if samples == 0:
            continue
        seen += samples
        curve.time_s.append(end_s - start)
        curve.samples.append(seen)
        curve.loss.append(loss_sum / samples)
    return curve, start, end


@dataclass(kw_only=True, slots=True)
class DataParallelResult:
    """One run of one engine."""

    config: DataParallelConfig
    model: str
    data: str
    transport: str | None = None
    """What carried the collectives: 'gloo', 'mpi', or None (serial, hogwild)."""
    transport_note: str = ""
    """Why ``--transport auto`` did not choose MPI (one line), else empty."""
    num_train: int
    num_val: int
    steps: int
    """Optimizer steps per rank (rounds); Hogwild applies ``updates`` in all."""
    updates: int
    """Updates applied to the model: ``steps`` (synchronous) or the workers' sum (Hogwild)."""
    samples: int
    """Training samples processed by all ranks together."""
    train_s: float
    """Seconds from the first rank's start of training to the last rank's end (process
    start-up, data transfer and evaluation excluded)."""
    wall_s: float
    """Seconds of the whole run as the caller sees it (start-up and evaluation included)."""
    curve: LossCurve
    val: EvalResult | None
    ranks: list[dict[str, Any]]
    cpu: CpuTrace | None
    cpu_summary: dict[str, Any]
    machine: dict[str, Any]
    startup_s: float | None = None
    """Seconds from the start of the process that called run_data_parallel (the ``parnn``
    command) to the first rank's first training step: imports, data loading, process
    start-up."""

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.train_s if self.train_s > 0 else 0.0

    @property
    def independent(self) -> bool:
        """Replicas that averaged only once, at the end (an averaging period longer than
        the run): the zero-communication ceiling of ``parnn dp --compare``."""
        period = self.config.average_every
        return (
            self.config.engine in AVERAGING_ENGINES and period is not None and period >= self.steps
        )

    @property
    def label(self) -> str:
        """'ddp x2', 'serial 1t', 'serial 2t', 'independent x2': the engine and its
        parallelism; 'ddp x2 mpi' when the transport was chosen explicitly."""
        if self.config.engine == "serial":
            return f"serial {self.config.threads}t"
        name = "independent" if self.independent else self.config.engine
        label = f"{name} x{self.config.num_ranks}"
        explicit = self.config.transport != "auto" and self.config.engine != "mpi"
        return f"{label} {self.transport}" if explicit and self.transport else label

    def to_dict(self, *, curve_points: int = 200, cpu_trace: bool = False) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "engine": self.config.engine,
            "label": self.label,
            "model": self.model,
            "data": self.data,
            "transport": self.transport,
            "transport_note": self.transport_note,
            "num_train": self.num_train,
            "num_val": self.num_val,
            "config": self.config.to_dict(),
            "steps": self.steps,
            "updates": self.updates,
            "samples": self.samples,
            "train_s": round(self.train_s, 4),
            "wall_s": round(self.wall_s, 4),
            "startup_s": self.startup_s,
            "samples_per_s": round(self.samples_per_s, 2),
            "final_train_loss": self.curve.tail_loss(),
            "val": self.val.to_dict() if self.val is not None else None,
            "ranks": self.ranks,
            "cpu": self.cpu_summary,
            "curve": self.curve.to_dict(curve_points),
            "machine": self.machine,
        }
        if cpu_trace and self.cpu is not None:
            payload["cpu_trace"] = self.cpu.to_dict()
        return payload
