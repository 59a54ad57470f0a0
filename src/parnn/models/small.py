"""Small models: a feed-forward net for MNIST, LeNet-5, and ``dummy16`` for partitioner
studies."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from parnn.models.units import conv_unit, linear_unit, require_output_shape, unit

__all__ = ["DUMMY16_WIDTH", "MLP_HIDDEN", "FitWidth", "dummy16", "lenet5", "mlp"]

MLP_HIDDEN = (512, 256, 128)  # hidden widths of `mlp`
DUMMY16_WIDTH = 1024  # features of every dummy16 unit


def mlp(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Feed-forward net: 4 units fc1..fc4 (widths 512, 256, 128, classes); 567k params at 1x28x28."""
    widths = (math.prod(input_shape), *MLP_HIDDEN)
    units: OrderedDict[str, nn.Module] = OrderedDict()
    for index, (width_in, width_out) in enumerate(zip(widths, widths[1:], strict=False)):
        units[f"fc{index + 1}"] = linear_unit(width_in, width_out, flatten=index == 0)
    units[f"fc{len(widths)}"] = linear_unit(widths[-1], num_classes, relu=False)
    return nn.Sequential(units)


def _lenet5_features(input_shape: tuple[int, ...]) -> nn.Sequential:
    channels = input_shape[0]
    return nn.Sequential(
        OrderedDict(
            # (C, 28, 28) -> (6, 28, 28) -> pool (6, 14, 14)
            conv1=conv_unit(channels, 6, 5, padding=2, pool=nn.MaxPool2d(2)),
            # (6, 14, 14) -> (16, 10, 10) -> pool (16, 5, 5)
            conv2=conv_unit(6, 16, 5, pool=nn.MaxPool2d(2)),
        )
    )


def lenet5(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """LeNet-5 (ReLU, max pooling): conv1, conv2, fc1, fc2, fc3; 61,706 params at 1x28x28/10.

    Needs inputs of at least 12x12 (the second 5x5 conv after a 2x2 pool).
    """
    features = _lenet5_features(input_shape)
    flat = math.prod(require_output_shape("lenet5", _lenet5_features, input_shape))
    return nn.Sequential(
        OrderedDict(
            [
                *features.named_children(),
                ("fc1", linear_unit(flat, 120, flatten=True)),  # 400 -> 120 at 28x28
                ("fc2", linear_unit(120, 84)),
                ("fc3", linear_unit(84, num_classes, relu=False)),
            ]
        )
    )


class FitWidth(nn.Module):
    """Flatten to (N, D), then average-pool (or repeat) the D features to ``width``: a
    parameter-free no-op once D == width, so that every dummy16 unit is the same."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (N, D)
        if x.shape[1] == self.width:
            return x
        return F.adaptive_avg_pool1d(x.unsqueeze(1), self.width).squeeze(1)  # (N, width)

    def extra_repr(self) -> str:
        return f"width={self.width}"


def dummy16(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """16 identical units block1..block16, each FitWidth + Linear(1024, 1024) + ReLU
    (1,049,600 params, the same cost), at any input shape.

    FitWidth resizes the flattened input to 1024 features in block1 and does nothing after.
    The classifier Linear(1024, num_classes) rides in block16 (about 1% of that unit's
    cost), so that the model still ends in logits.
    """
    width = DUMMY16_WIDTH
    units: OrderedDict[str, nn.Module] = OrderedDict()
    for index in range(1, 17):
        units[f"block{index}"] = unit(
            ("fit", FitWidth(width)),
            ("linear", nn.Linear(width, width)),
            ("relu", nn.ReLU(inplace=True)),
        )
    last = units["block16"]
    assert isinstance(last, nn.Sequential)
    units["block16"] = unit(*last.named_children(), ("classifier", nn.Linear(width, num_classes)))
    return nn.Sequential(units)
