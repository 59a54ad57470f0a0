"""A compute-heavier VGG-style CNN for the data-parallel study (user model,
``--model benchmarks/data_parallel/vgg_cifar.py:build``), for CIFAR-shaped 3x32x32 inputs.

Three 3x3 conv blocks (32, 64, 128 channels, each ReLU + 2x2 max pool), then 256 hidden
units: 0.62 M parameters (2.5 MB of gradients per all-reduce) and ~10 M multiply-adds per
sample forward, ~25x LeNet-5's, so a step at 64 samples per rank spends far longer
computing than any transport spends all-reducing.
"""

from collections import OrderedDict

from torch import nn


def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    channels, height, width = input_shape

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        OrderedDict(
            block1=block(channels, 32),  # (B, 32, H/2, W/2)
            block2=block(32, 64),  # (B, 64, H/4, W/4)
            block3=block(64, 128),  # (B, 128, H/8, W/8)
            fc1=nn.Sequential(
                nn.Flatten(), nn.Linear(128 * (height // 8) * (width // 8), 256), nn.ReLU()
            ),
            fc2=nn.Linear(256, num_classes),
        )
    )
