"""The simulator's values: the per-stage times it replays (:class:`StageTimes`), the busy
intervals it predicts (:class:`SimEvent`) and the predicted step (:class:`Simulation`).
The synchronous replay is :mod:`.simulate`, the asynchronous one :mod:`.simulate_async`;
both build these (they live apart from either, so that neither imports the other's
module for them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parnn.errors import ConfigError
from parnn.partition.cost import PartitionCost

__all__ = ["MESSAGE_MODELS", "SimEvent", "Simulation", "StageTimes"]

MESSAGE_MODELS = ("eager", "posted")


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Seconds per micro-batch for every (virtual) stage, in model order."""

    forward_s: tuple[float, ...]
    backward_s: tuple[float, ...]
    recv_forward_s: tuple[float, ...] = ()
    """Receiving the input activations (default 0)."""
    recv_backward_s: tuple[float, ...] = ()
    """Receiving the output's gradient (default 0)."""
    saved_bytes: tuple[int, ...] = ()
    """Activation bytes one micro-batch keeps on the stage until its backward (default 0)."""
    update_s: tuple[float, ...] = ()
    """Optimizer update, once per step after the rank's last action (default 0)."""
    backward_weight_s: tuple[float, ...] = ()
    """The weight-gradient part (W) of ``backward_s``, for the schedules that split the
    backward (zero-bubble, zbv, dualpipev); the input-gradient part (I) is the rest.
    Default: half of ``backward_s`` (the profiles measure the backward whole; see
    docs/partition.md)."""
    link_latency_s: float = 0.0
    """Time a tensor spends between ranks before the receiver can take it in (default
    0); it delays the receiver's action but does not occupy it."""
    messages: str = "eager"
    """When a message's latency starts: 'eager' when its producer finishes (an ideal
    transport, receives posted ahead); 'posted' once both sides have posted it, as torch's
    schedules post them (see :mod:`.simulate`)."""

    def __post_init__(self) -> None:
        if self.messages not in MESSAGE_MODELS:
            raise ConfigError(
                f"messages={self.messages!r}: choose one of {', '.join(MESSAGE_MODELS)}"
            )
        if not self.link_latency_s >= 0.0:
            raise ConfigError(f"link_latency_s must be >= 0 seconds, got {self.link_latency_s}")
        count = len(self.forward_s)
        if count < 1:
            raise ConfigError("stage times need at least one stage")
        if not self.backward_weight_s and self.backward_s:
            object.__setattr__(self, "backward_weight_s", tuple(b / 2 for b in self.backward_s))
        names = ("backward_s", "recv_forward_s", "recv_backward_s", "saved_bytes", "update_s")
        for name in (*names, "backward_weight_s"):
            values = getattr(self, name)
            if not values:
                object.__setattr__(
                    self, name, (0,) * count if name == "saved_bytes" else (0.0,) * count
                )
            elif len(values) != count:
                raise ConfigError(f"{name} has {len(values)} values for {count} stages")
        for name in ("forward_s", *names[:3], "update_s", "backward_weight_s"):
            if any(not value >= 0.0 for value in getattr(self, name)):
                raise ConfigError(f"{name} must be >= 0 seconds, got {getattr(self, name)}")
        if any(w > b for w, b in zip(self.backward_weight_s, self.backward_s, strict=True)):
            raise ConfigError("backward_weight_s is part of backward_s: it cannot be larger")

    @property
    def num_stages(self) -> int:
        return len(self.forward_s)

    @classmethod
    def from_cost(cls, cost: PartitionCost, *, messages: str = "posted") -> StageTimes:
        """The per-micro-batch times of a priced partition: each receive's latency goes on
        the link, the rest (bytes over bandwidth) stays the receiver's work; messages as
        torch's schedules post them unless ``messages`` says otherwise."""
        stages = cost.stages
        latency = cost.link_latency_s

        def busy(receive_s: float) -> float:
            return max(receive_s - latency, 0.0)

        return cls(
            forward_s=tuple(s.forward_s for s in stages),
            backward_s=tuple(s.backward_s for s in stages),
            recv_forward_s=tuple(busy(s.recv_forward_s) for s in stages),
            recv_backward_s=tuple(busy(s.recv_backward_s) for s in stages),
            saved_bytes=tuple(s.saved_bytes for s in stages),
            update_s=tuple(s.update_s for s in stages),
            backward_weight_s=tuple(s.backward_weight_s for s in stages),
            link_latency_s=latency,
            messages=messages,
        )


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One busy interval of a rank."""

    rank: int
    stage: int
    microbatch: int
    kind: str
    """'forward', 'backward' (whole, or its input-gradient part I under a split backward),
    'backward-weight' (W), 'recv-forward', 'recv-backward' or 'update' (micro-batch -1)."""
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class Simulation:
    """The predicted step of one schedule on one set of stage costs."""

    schedule: str
    num_microbatches: int
    num_ranks: int
    num_stages: int
    step_time_s: float
    """From the first action's start to the last action's end."""
    compute_s: tuple[float, ...]
    """Per rank: forward + backward seconds."""
    comm_s: tuple[float, ...]
    """Per rank: seconds receiving."""
    update_s: tuple[float, ...]
    """Per rank: seconds in the optimizer update at the end of the step."""
    peak_in_flight: tuple[int, ...]
    """Per rank: most micro-batches (per chunk) forwarded and not yet backwarded."""
    peak_activation_bytes: tuple[int, ...]
    """Per rank: most saved activation bytes held at once."""
    events: tuple[SimEvent, ...] = field(repr=False, default=())
    stashed_versions: tuple[int, ...] = ()
    """Asynchronous schedules: per rank, weight versions stashed at the peak (besides
    the live weights); empty for the synchronous ones."""

    @property
    def busy_s(self) -> tuple[float, ...]:
        return tuple(
            c + m + u for c, m, u in zip(self.compute_s, self.comm_s, self.update_s, strict=True)
        )

    @property
    def idle_s(self) -> tuple[float, ...]:
        return tuple(self.step_time_s - busy for busy in self.busy_s)

    @property
    def rank_bubble(self) -> tuple[float, ...]:
        """Per rank: the fraction of the step it sits idle."""
        if self.step_time_s <= 0:
            return (0.0,) * self.num_ranks
        return tuple(idle / self.step_time_s for idle in self.idle_s)

    @property
    def bubble_fraction(self) -> float:
        """Idle rank time over all rank time: 1 - sum(busy) / (k * step time)."""
        if self.step_time_s <= 0:
            return 0.0
        return 1.0 - sum(self.busy_s) / (self.num_ranks * self.step_time_s)

    def to_dict(self, *, events: bool = False) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "schedule": self.schedule,
            "num_microbatches": self.num_microbatches,
            "num_ranks": self.num_ranks,
            "num_stages": self.num_stages,
            "step_time_s": self.step_time_s,
            "bubble_fraction": self.bubble_fraction,
            "ranks": [
                {
                    "rank": r,
                    "busy_s": self.busy_s[r],
                    "compute_s": self.compute_s[r],
                    "comm_s": self.comm_s[r],
                    "update_s": self.update_s[r],
                    "idle_s": self.idle_s[r],
                    "bubble_fraction": self.rank_bubble[r],
                    "peak_in_flight": self.peak_in_flight[r],
                    "peak_activation_bytes": self.peak_activation_bytes[r],
                    **(
                        {"stashed_versions": self.stashed_versions[r]}
                        if self.stashed_versions
                        else {}
                    ),
                }
                for r in range(self.num_ranks)
            ],
        }
        if events:
            payload["events"] = [
                {
                    "rank": e.rank,
                    "stage": e.stage,
                    "microbatch": e.microbatch,
                    "kind": e.kind,
                    "start_s": e.start_s,
                    "end_s": e.end_s,
                }
                for e in self.events
            ]
        return payload
