"""Pipeline stages: the slice of a model's units one stage holds, the activation shapes at
its boundaries, and a ``PipelineStage`` that times its own forward and backward passes.

Shapes come from a dry run on PyTorch's ``meta`` device (no memory, no compute), so that
every stage can give torch static input/output shapes and skip shape inference at run
time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.distributed.pipelining import PipelineStage

from parnn.partition import Partition

__all__ = ["StageMeter", "TimedPipelineStage", "boundary_shapes", "stage_module"]


def stage_module(model: nn.Sequential, partition: Partition, stage: int) -> nn.Sequential:
    """The units of ``stage`` as their own ``nn.Sequential`` (sharing the modules)."""
    units = list(model.named_children())
    span = partition.stage_ranges[stage]
    return nn.Sequential(OrderedDict(units[span.start : span.stop]))


def boundary_shapes(
    model: nn.Sequential, partition: Partition, sample_shape: Sequence[int], microbatch_size: int
) -> list[tuple[int, ...]]:
    """The tensor shape entering each stage, then the model's output shape:
    ``num_stages + 1`` shapes, e.g. ``[(8, 1, 28, 28), (8, 16, 5, 5), (8, 10)]``.

    ``model`` may live on the ``meta`` device (build it under ``torch.device("meta")``).
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    units = list(model.children())
    tensor = torch.empty((microbatch_size, *sample_shape), device="meta")
    shapes = [tuple(tensor.shape)]
    was_training = model.training
    model.eval()  # dropout and batch-norm bookkeeping are irrelevant to shapes
    try:
        with torch.no_grad():
            for span in partition.stage_ranges:
                for unit in units[span.start : span.stop]:
                    if device.type == "meta":
                        tensor = unit(tensor)
                    else:  # a real model: run it on a real (zero) tensor, shapes only
                        tensor = unit(torch.zeros(tensor.shape)).to("meta")
                shapes.append(tuple(tensor.shape))
    finally:
        model.train(was_training)
    return shapes


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
