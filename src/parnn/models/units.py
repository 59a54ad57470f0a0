"""Cuttable units: the pieces every zoo model is a flat sequence of, and helpers around them.

A unit is the smallest piece a pipeline may cut after: a conv or linear layer with its norm
and activation (and the pooling that follows it), or a whole residual block. Each unit takes
one tensor and returns one tensor, so any contiguous run of units is a valid stage.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn

from parnn.errors import ModelError

__all__ = [
    "check_input_shape",
    "check_num_classes",
    "conv_unit",
    "count_parameters",
    "format_shape",
    "is_meta",
    "linear_unit",
    "output_shape",
    "require_output_shape",
    "unit",
    "unit_names",
]

# A zoo model is built from (input_shape, num_classes) -> nn.Sequential of units.
Builder = Callable[[tuple[int, ...], int], nn.Sequential]


def unit(*layers: tuple[str, nn.Module]) -> nn.Sequential:
    """One cuttable unit from named layers, e.g. ``unit(("conv", conv), ("relu", relu))``."""
    return nn.Sequential(OrderedDict(layers))


def conv_unit(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int = 0,
    batch_norm: bool = False,
    pool: nn.Module | None = None,
) -> nn.Sequential:
    """Conv2d [+ BatchNorm2d] + ReLU [+ pool]; the conv has no bias when a norm follows it."""
    layers: list[tuple[str, nn.Module]] = [
        (
            "conv",
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                bias=not batch_norm,
            ),
        )
    ]
    if batch_norm:
        layers.append(("bn", nn.BatchNorm2d(out_channels)))
    layers.append(("relu", nn.ReLU(inplace=True)))
    if pool is not None:
        layers.append(("pool", pool))
    return unit(*layers)


def linear_unit(
    in_features: int,
    out_features: int,
    *,
    flatten: bool = False,
    dropout: float | None = None,
    relu: bool = True,
) -> nn.Sequential:
    """[Flatten +] [Dropout +] Linear [+ ReLU]: the first linear unit of a model flattens."""
    layers: list[tuple[str, nn.Module]] = []
    if flatten:
        layers.append(("flatten", nn.Flatten()))
    if dropout is not None:
        layers.append(("dropout", nn.Dropout(dropout)))
    layers.append(("linear", nn.Linear(in_features, out_features)))
    if relu:
        layers.append(("relu", nn.ReLU(inplace=True)))
    return unit(*layers)


def is_meta(module: nn.Module) -> bool:
    """True when the module's parameters live on the ``meta`` device (shapes only): custom
    initialisation is then skipped, as it would only cost time (normal_ on meta is slow)."""
    return any(parameter.is_meta for parameter in module.parameters())


def unit_names(model: nn.Module) -> list[str]:
    """The names of a model's cuttable units (its direct children), in order."""
    return [name for name, _ in model.named_children()]


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (shared parameters counted once); works on ``meta``."""
    return sum(parameter.numel() for parameter in module.parameters())


def format_shape(shape: Sequence[int]) -> str:
    """(3, 32, 32) -> '3x32x32'."""
    return "x".join(str(size) for size in shape)


def check_input_shape(
    model: str, input_shape: Sequence[int], *, ranks: tuple[int, ...] = (3,)
) -> tuple[int, ...]:
    """The input shape as a tuple of positive ints of an accepted rank, or a ModelError."""
    try:
        if isinstance(input_shape, str | bytes):
            raise TypeError
        shape = tuple(operator.index(size) for size in input_shape)
    except TypeError:
        raise ModelError(
            f"bad input shape {input_shape!r} for {model}: expected a tuple of positive "
            "integers such as (3, 32, 32)"
        ) from None
    if len(shape) not in ranks:
        counts = ", ".join(str(rank) for rank in ranks[:-1])
        wanted = f"{counts} or {ranks[-1]}" if counts else str(ranks[-1])
        raise ModelError(
            f"bad input shape {format_shape(shape) or '()'} for {model}: it takes {wanted} "
            "sizes, (C, H, W) without the batch dimension, e.g. (3, 32, 32)"
        )
    if any(size <= 0 for size in shape):
        raise ModelError(
            f"bad input shape {format_shape(shape)} for {model}: every size must be a positive "
            "integer, e.g. 1x28x28"
        )
    return shape


def check_num_classes(model: str, num_classes: int) -> int:
    """``num_classes`` as a positive int, or a ModelError."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(
            f"bad number of classes {num_classes!r} for {model}: it must be a positive "
            "integer, e.g. 10"
        )
    return num_classes


def output_shape(
    make: Callable[[tuple[int, ...]], nn.Module], input_shape: tuple[int, ...]
) -> tuple[int, ...] | None:
    """Shape of one sample after ``make(input_shape)``, or None when the input is too small.

    The module is built and run on the ``meta`` device: no memory, no arithmetic.
    """
    with torch.device("meta"):
        module = make(input_shape).eval()  # eval: BatchNorm would reject a batch of one 1x1 map
        try:
            out = module(torch.empty((1, *input_shape)))
        except RuntimeError:  # "Output size is too small", "Kernel size can't be greater ..."
            return None
    return tuple(out.shape[1:])


def require_output_shape(
    model: str,
    make: Callable[[tuple[int, ...]], nn.Module],
    input_shape: tuple[int, ...],
    *,
    largest: int = 4096,
) -> tuple[int, ...]:
    """Output shape of ``make(input_shape)`` at ``input_shape``, or a ModelError naming the
    smallest square input (same channels) the architecture accepts."""
    shape = output_shape(make, input_shape)
    if shape is not None:
        return shape
    channels, height, width = input_shape
    smallest = next(
        (
            size
            for size in range(min(height, width) + 1, largest + 1)
            if output_shape(make, (channels, size, size)) is not None
        ),
        None,
    )
    if smallest is None:
        raise ModelError(
            f"input {format_shape(input_shape)} is too small for {model}: its convolutions "
            "and pooling shrink it to nothing; use a larger input"
        )
    raise ModelError(
        f"input {format_shape(input_shape)} is too small for {model}: its convolutions and "
        f"pooling need height and width of at least {smallest} (e.g. --input "
        f"{channels}x{smallest}x{smallest}); resize the data or use a model for small images "
        "such as mlp"
    )
