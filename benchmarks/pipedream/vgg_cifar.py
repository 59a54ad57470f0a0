"""A VGG-style CNN for CIFAR-shaped inputs (3x32x32): three blocks of two 3x3
convolutions, a max pool after each block, then two linear layers. Eight cuttable units;
no batch norm or dropout, so a pipelined run is deterministic."""

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
            conv1=conv(channels, 32, pool=False),
            conv2=conv(32, 32, pool=True),  # (32, H/2, W/2)
            conv3=conv(32, 64, pool=False),
            conv4=conv(64, 64, pool=True),  # (64, H/4, W/4)
            conv5=conv(64, 128, pool=False),
            conv6=conv(128, 128, pool=True),  # (128, H/8, W/8)
            fc1=nn.Sequential(
                nn.Flatten(), nn.Linear(128 * (height // 8) * (width // 8), 256), nn.ReLU()
            ),
            fc2=nn.Linear(256, num_classes),
        )
    )
