"""The benchmark's user model, loaded as 'benchmarks/plan/user_model.py:build': a small
convolutional network written the way a user would, as an nn.Sequential of six units."""

from __future__ import annotations

from torch import nn


def build(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> nn.Sequential:
    channels, height, width = input_shape
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4)),
        nn.Sequential(nn.Flatten(), nn.Linear(128 * 16, 256), nn.ReLU()),
        nn.Linear(256, num_classes),
    )
