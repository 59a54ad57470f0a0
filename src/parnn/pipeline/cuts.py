"""Where a pipeline is cut: the slice of a model's units one stage holds, and the
activation shapes at the boundaries.

Shapes come from a dry run on PyTorch's ``meta`` device (no memory, no compute), so that
every stage can give torch static input/output shapes and skip shape inference at run
time. This module does not import ``torch.distributed.pipelining`` (seconds): the process
that plans a run never needs it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from parnn.partition import Partition

__all__ = ["boundary_shapes", "stage_module"]


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
