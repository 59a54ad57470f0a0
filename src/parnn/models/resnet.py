"""ResNet-50 (v1.5, as in torchvision) with one cuttable unit per bottleneck block."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from parnn.models.units import is_meta, unit

__all__ = ["RESNET50_LAYERS", "Bottleneck", "resnet50"]

# (blocks, bottleneck width, stride of the first block) per stage; outputs are 4x wider.
RESNET50_LAYERS: tuple[tuple[int, int, int], ...] = (
    (3, 64, 1),
    (4, 128, 2),
    (6, 256, 2),
    (3, 512, 2),
)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride: v1.5), 1x1 expand x4, plus the shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def resnet50(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """ResNet-50: conv1, layer1_1..layer4_3 (16 bottlenecks), fc (18 units);
    25,557,032 params at 3x224x224/1000. Works at any input size (global average pool).
    """
    channels = input_shape[0]
    units: OrderedDict[str, nn.Module] = OrderedDict()
    units["conv1"] = unit(  # (3, 224, 224) -> (64, 56, 56)
        ("conv", nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)),
        ("bn", nn.BatchNorm2d(64)),
        ("relu", nn.ReLU(inplace=True)),
        ("pool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
    )
    in_channels = 64
    for stage, (blocks, width, stride) in enumerate(RESNET50_LAYERS, start=1):
        for index in range(1, blocks + 1):
            block = Bottleneck(in_channels, width, stride if index == 1 else 1)
            units[f"layer{stage}_{index}"] = block
            in_channels = width * Bottleneck.expansion
    # The global pool belongs to the unit before it: a cut there sends 2048 numbers per sample.
    last = f"layer{len(RESNET50_LAYERS)}_{RESNET50_LAYERS[-1][0]}"
    units[last] = unit(("block", units[last]), ("pool", nn.AdaptiveAvgPool2d(1)))
    units["fc"] = unit(
        ("flatten", nn.Flatten()),
        ("linear", nn.Linear(in_channels, num_classes)),  # 2048 -> classes
    )
    model = nn.Sequential(units)
    _initialise(model)
    return model


def _initialise(model: nn.Module) -> None:
    """torchvision's initialisation: He (fan-out) convs, unit BatchNorm."""
    if is_meta(model):
        return
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
