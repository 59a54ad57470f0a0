"""A small VGG-style user model for the pipeline tests: conv units without dropout or
batch norm, so that a pipeline run can match the reference trainer exactly."""

from collections import OrderedDict

from torch import nn


def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    channels, height, width = input_shape

    def conv(cin: int, cout: int, pool: bool) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
        return nn.Sequential(*layers)

    return nn.Sequential(
        OrderedDict(
            block1=conv(channels, 8, pool=False),
            block2=conv(8, 8, pool=True),
            block3=conv(8, 16, pool=False),
            block4=conv(16, 16, pool=True),
            fc1=nn.Sequential(
                nn.Flatten(), nn.Linear(16 * (height // 4) * (width // 4), 32), nn.ReLU()
            ),
            fc2=nn.Linear(32, num_classes),
        )
    )
