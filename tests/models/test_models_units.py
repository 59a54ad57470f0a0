"""parnn.models.units: output shapes worked out from the layers' arithmetic, checked against
torch's own dry run on the meta device."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def _meta_shape(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    with torch.device("meta"):
        try:
            return tuple(module.to("meta").eval()(torch.empty((1, *input_shape))).shape[1:])
        except RuntimeError:
            return None


@pytest.mark.parametrize(
    "layers",
    [
        [nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)],
        [nn.Conv2d(3, 8, 11, stride=4, padding=2), nn.MaxPool2d(3, stride=2), nn.Flatten()],
        [nn.Conv2d(3, 4, (3, 5), stride=(1, 2), dilation=(2, 1)), nn.BatchNorm2d(4)],
        [nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, stride=2, ceil_mode=True, padding=1)],
        [nn.AvgPool2d(2, ceil_mode=True), nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(2)],
        [nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), nn.Dropout(), nn.Flatten()],
    ],
)
def test_arithmetic_shapes_equal_a_dry_run_on_meta(layers: list[nn.Module]) -> None:
    """The arithmetic parnn uses instead of a dry run (which imports sympy, ~0.3 s of every
    start-up) gives torch's own shapes, including inputs too small for the layers."""
    from parnn.models.units import arithmetic_shape

    module = nn.Sequential(*layers)
    for size in (1, 2, 3, 5, 7, 8, 12, 13, 28, 31, 32, 63, 64, 224):
        known, shape = arithmetic_shape(module, (3, size, size + 3))
        assert known
        assert shape == _meta_shape(module, (3, size, size + 3)), size


def test_arithmetic_shape_declines_what_it_does_not_know() -> None:
    from parnn.models.units import arithmetic_shape

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x)

    assert arithmetic_shape(nn.Sequential(Block()), (3, 8, 8)) == (False, None)
    assert arithmetic_shape(nn.Sequential(nn.Linear(4, 2)), (4,)) == (False, None)
    assert arithmetic_shape(nn.Sequential(nn.Conv2d(3, 3, 3, padding="same")), (3, 8, 8)) == (
        False,
        None,
    )
