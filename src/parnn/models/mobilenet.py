"""MobileNetV2 (width 1.0, as in torchvision) with one cuttable unit per inverted residual."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from parnn.models.units import is_meta, unit

__all__ = ["MOBILENETV2_SETTINGS", "InvertedResidual", "mobilenetv2"]

# (expansion t, output channels c, repeats n, stride of the first repeat s): the paper's Table 2.
MOBILENETV2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return unit(
        (
            "conv",
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
        ),
        ("bn", nn.BatchNorm2d(out_channels)),
        ("relu", nn.ReLU6(inplace=True)),
    )


class InvertedResidual(nn.Module):
    """1x1 expand (t > 1), 3x3 depthwise (carrying the stride), 1x1 linear projection; the
    input is added back when the shapes agree (stride 1, same channels)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[tuple[str, nn.Module]] = []
        if expansion != 1:
            layers.append(("expand", _conv_bn_relu6(in_channels, hidden, 1)))
        layers += [
            ("depthwise", _conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden)),
            ("project", nn.Conv2d(hidden, out_channels, 1, bias=False)),
            ("bn", nn.BatchNorm2d(out_channels)),
        ]
        self.conv = unit(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return x + out if self.use_residual else out


def mobilenetv2(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """MobileNetV2: conv1, block1..block17, conv2, fc (20 units); 3,504,872 params at
    3x224x224/1000. Works at any input size (global average pool)."""
    units: OrderedDict[str, nn.Module] = OrderedDict()
    units["conv1"] = _conv_bn_relu6(input_shape[0], 32, 3, stride=2)  # (32, 112, 112) at 224
    in_channels = 32
    index = 0
    for expansion, out_channels, repeats, stride in MOBILENETV2_SETTINGS:
        for repeat in range(repeats):
            index += 1
            units[f"block{index}"] = InvertedResidual(
                in_channels, out_channels, stride if repeat == 0 else 1, expansion
            )
            in_channels = out_channels
    # (320, 7, 7) -> (1280, 7, 7) -> global pool (1280, 1, 1): the pool joins this unit.
    units["conv2"] = unit(
        *_conv_bn_relu6(in_channels, 1280, 1).named_children(),
        ("pool", nn.AdaptiveAvgPool2d(1)),
    )
    units["fc"] = unit(
        ("flatten", nn.Flatten()),
        ("dropout", nn.Dropout(0.2)),
        ("linear", nn.Linear(1280, num_classes)),
    )
    model = nn.Sequential(units)
    _initialise(model)
    return model


def _initialise(model: nn.Module) -> None:
    """torchvision's initialisation: He (fan-out) convs, unit BatchNorm, N(0, 0.01) linears."""
    if is_meta(model):
        return
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
