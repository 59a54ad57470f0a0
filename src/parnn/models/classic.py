"""AlexNet and VGG-16 as flat sequences of units, with torchvision's layer shapes.

Both size their classifier to the input with a dry run on the ``meta`` device instead of
torchvision's adaptive average pooling: at 224x224 the flattened features are 256x6x6 and
512x7x7 exactly as published (so the parameter counts match), and at 32x32 the head simply
becomes smaller.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from parnn.models.units import conv_unit, is_meta, require_output_shape, unit

__all__ = ["ALEXNET_IMAGENET_STEM_MIN", "VGG16_CONFIG", "alexnet", "vgg16"]

# AlexNet's ImageNet stem (11x11 stride 4, then three 3x3 stride-2 pools) needs 63x63:
# 63 -conv-> 15 -pool-> 7 -pool-> 3 -pool-> 1. Smaller inputs get a stride-1 stem.
ALEXNET_IMAGENET_STEM_MIN = 63

# VGG-16, configuration D: output channels per 3x3 conv, 'M' = 2x2 max pool.
VGG16_CONFIG: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


def _alexnet_features(input_shape: tuple[int, ...]) -> nn.Sequential:
    channels, height, width = input_shape
    stride = 4 if min(height, width) >= ALEXNET_IMAGENET_STEM_MIN else 1
    padding = 2 if stride == 4 else 5  # stride 1: 'same' padding for the 11x11 kernel

    def pool() -> nn.Module:
        return nn.MaxPool2d(kernel_size=3, stride=2)

    return nn.Sequential(
        OrderedDict(
            conv1=conv_unit(channels, 64, 11, stride=stride, padding=padding, pool=pool()),
            conv2=conv_unit(64, 192, 5, padding=2, pool=pool()),
            conv3=conv_unit(192, 384, 3, padding=1),
            conv4=conv_unit(384, 256, 3, padding=1),
            conv5=conv_unit(256, 256, 3, padding=1, pool=pool()),  # (256, 6, 6) at 224
        )
    )


def alexnet(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """AlexNet: conv1..conv5, fc1..fc3 (8 units); 61,100,840 params at 3x224x224/1000.

    Below 63x63 the first conv uses stride 1 (as CIFAR variants do); inputs >= 15x15.
    """
    features = _alexnet_features(input_shape)
    flat = math.prod(require_output_shape("alexnet", _alexnet_features, input_shape))
    return nn.Sequential(
        OrderedDict(
            [
                *features.named_children(),
                (
                    "fc1",
                    unit(
                        ("flatten", nn.Flatten()),
                        ("dropout", nn.Dropout(0.5)),
                        ("linear", nn.Linear(flat, 4096)),  # 9216 -> 4096 at 224
                        ("relu", nn.ReLU(inplace=True)),
                    ),
                ),
                (
                    "fc2",
                    unit(
                        ("dropout", nn.Dropout(0.5)),
                        ("linear", nn.Linear(4096, 4096)),
                        ("relu", nn.ReLU(inplace=True)),
                    ),
                ),
                ("fc3", unit(("linear", nn.Linear(4096, num_classes)))),
            ]
        )
    )


def _vgg16_features(input_shape: tuple[int, ...]) -> nn.Sequential:
    units: OrderedDict[str, nn.Module] = OrderedDict()
    channels = input_shape[0]
    for block, widths in enumerate(VGG16_CONFIG, start=1):
        for layer, width in enumerate(widths, start=1):
            # ceil_mode changes nothing at 224 (every map is even) and lets 28x28 through.
            last = layer == len(widths)
            pool = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True) if last else None
            units[f"block{block}_{layer}"] = conv_unit(channels, width, 3, padding=1, pool=pool)
            channels = width
    return nn.Sequential(units)


def vgg16(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """VGG-16: block1_1..block5_3, fc1..fc3 (16 units); 138,357,544 params at 3x224x224/1000."""
    features = _vgg16_features(input_shape)
    flat = math.prod(require_output_shape("vgg16", _vgg16_features, input_shape))
    model = nn.Sequential(
        OrderedDict(
            [
                *features.named_children(),
                (
                    "fc1",
                    unit(
                        ("flatten", nn.Flatten()),
                        ("linear", nn.Linear(flat, 4096)),  # 25088 -> 4096 at 224
                        ("relu", nn.ReLU(inplace=True)),
                        ("dropout", nn.Dropout(0.5)),
                    ),
                ),
                (
                    "fc2",
                    unit(
                        ("linear", nn.Linear(4096, 4096)),
                        ("relu", nn.ReLU(inplace=True)),
                        ("dropout", nn.Dropout(0.5)),
                    ),
                ),
                ("fc3", unit(("linear", nn.Linear(4096, num_classes)))),
            ]
        )
    )
    _init_vgg(model)
    return model


def _init_vgg(model: nn.Module) -> None:
    """torchvision's VGG initialisation: He (fan-out) convs, N(0, 0.01) linears, zero biases."""
    if is_meta(model):
        return
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
