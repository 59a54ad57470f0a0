"""Cuttable units: the pieces every zoo model is a flat sequence of, and helpers around them.

A unit is the smallest piece a pipeline may cut after: a conv or linear layer with its norm
and activation (and the pooling that follows it), or a whole residual block. Each unit takes
one tensor and returns one tensor, so any contiguous run of units is a valid stage.
"""

from __future__ import annotations

import math
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

    The module is built on the ``meta`` device (no memory). Its output shape is worked out
    from the layers' own arithmetic where every layer is one :func:`arithmetic_shape` knows
    (a dry run on ``meta`` imports torch's symbolic shapes and sympy: ~0.3 s of every
    command's start-up), and by a dry run on ``meta`` otherwise.
    """
    with torch.device("meta"):
        module = make(input_shape).eval()  # eval: BatchNorm would reject a batch of one 1x1 map
        known, shape = arithmetic_shape(module, input_shape)
        if known:
            return shape
        try:
            out = module(torch.empty((1, *input_shape)))
        except RuntimeError:  # "Output size is too small", "Kernel size can't be greater ..."
            return None
    return tuple(out.shape[1:])


def _pair(value: int | tuple[int, ...]) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0], value[1]
    return None


def _window(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool) -> int:
    """Output length of a convolution or pooling window along one axis (torch's formula)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + padding:  # the last window must start inside
        out -= 1
    return out


_SHAPE_KEEPING = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Dropout, nn.Dropout2d, nn.Identity, nn.BatchNorm2d,
    nn.LocalResponseNorm,
)  # fmt: skip


def arithmetic_shape(
    module: nn.Module, input_shape: tuple[int, ...]
) -> tuple[bool, tuple[int, ...] | None]:
    """``(True, shape)`` of one sample after ``module`` (None: the input is too small), found
    from the layers' arithmetic without running anything, when ``module`` is a sequence of
    convolutions, poolings, activations, normalisations, dropouts and flattens;
    ``(False, None)`` for anything else (a residual block, a custom layer)."""
    shape: tuple[int, ...] = tuple(input_shape)
    layers = [  # in the order a Sequential runs them, a module used twice listed twice
        m
        for _, m in module.named_modules(remove_duplicate=False)
        if not isinstance(m, nn.Sequential)
    ]
    for layer in layers:
        if any(type(parent) is not nn.Sequential for parent in _containers_of(module, layer)):
            return False, None
        if isinstance(layer, _SHAPE_KEEPING):
            continue
        if isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                return False, None
            shape = (math.prod(shape),)
            continue
        if len(shape) != 3:
            return False, None
        channels, height, width = shape
        if isinstance(layer, nn.Conv2d):
            if layer.in_channels != channels or isinstance(layer.padding, str):
                return False, None
            params = [
                _pair(v) for v in (layer.kernel_size, layer.stride, layer.padding, layer.dilation)
            ]
            ceil = False
            channels = layer.out_channels
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            dilation = layer.dilation if isinstance(layer, nn.MaxPool2d) else 1
            stride = layer.stride if layer.stride is not None else layer.kernel_size
            params = [_pair(v) for v in (layer.kernel_size, stride, layer.padding, dilation)]
            ceil = bool(layer.ceil_mode)
        elif isinstance(layer, nn.AdaptiveAvgPool2d):
            size = _pair(layer.output_size)  # type: ignore[arg-type]
            if size is None:
                return False, None
            shape = (channels, *size)
            continue
        else:
            return False, None
        if any(value is None for value in params):
            return False, None
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = params  # type: ignore[misc]
        height = _window(height, kh, sh, ph, dh, ceil)
        width = _window(width, kw, sw, pw, dw, ceil)
        if height <= 0 or width <= 0:
            return True, None
        shape = (channels, height, width)
    return True, shape


def _containers_of(root: nn.Module, target: nn.Module) -> list[nn.Module]:
    """The modules on the path from ``root`` down to ``target`` (``target`` excluded)."""
    for child in root.children():
        if child is target:
            return [root]
        below = _containers_of(child, target)
        if below:
            return [root, *below]
    return []


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
