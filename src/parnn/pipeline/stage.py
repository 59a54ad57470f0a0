"""Pipeline stages: a ``PipelineStage`` that times its own forward and backward passes.

The slice of a model's units one stage holds and the activation shapes at its boundaries
live in :mod:`parnn.pipeline.cuts` (re-exported here), which the planning process imports
without ``torch.distributed.pipelining``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from torch.distributed.pipelining import PipelineStage

from parnn.pipeline.cuts import boundary_shapes, stage_module

__all__ = ["StageMeter", "TimedPipelineStage", "boundary_shapes", "stage_module"]


@dataclass(slots=True)
class StageMeter:
    """Compute time of every forward and backward chunk of the stages of one rank.

    Records are ``(step, stage, microbatch, kind, start_s, duration_s)``; kind is "F",
    "B" (full or input-gradient backward) or "W" (weight gradient, zero-bubble schedules).
    """

    step: int = 0
    records: list[tuple[int, int, int, str, float, float]] = field(default_factory=list)

    def record(self, stage: int, microbatch: int, kind: str, start_s: float) -> None:
        self.records.append(
            (self.step, stage, microbatch, kind, start_s, time.perf_counter() - start_s)
        )


class TimedPipelineStage(PipelineStage):
    """A ``PipelineStage`` that reports the compute time of each chunk to a meter."""

    def __init__(self, *args: Any, meter: StageMeter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meter = meter

    def forward_one_chunk(self, fwd_chunk_id: int, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return super().forward_one_chunk(fwd_chunk_id, *args, **kwargs)
        finally:
            self.meter.record(self.stage_index, fwd_chunk_id, "F", start)

    def backward_one_chunk(self, bwd_chunk_id: int, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return super().backward_one_chunk(bwd_chunk_id, *args, **kwargs)
        finally:
            self.meter.record(self.stage_index, bwd_chunk_id, "B", start)

    def backward_weight_one_chunk(self, bwd_chunk_id: int, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return super().backward_weight_one_chunk(bwd_chunk_id, *args, **kwargs)
        finally:
            self.meter.record(self.stage_index, bwd_chunk_id, "W", start)
