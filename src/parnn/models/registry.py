"""The model registry: names -> specs, and :func:`build_model`, the one way to get a model."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from parnn.errors import ModelError
from parnn.models import classic, mobilenet, resnet, small
from parnn.models.units import Builder, check_input_shape, check_num_classes
from parnn.models.user import build_user_model, is_user_spec

__all__ = ["ModelSpec", "build_model", "get_model_spec", "model_names"]

_IMAGENET = (3, 224, 224)
_MNIST = (1, 28, 28)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A zoo model: its name, what it is, its reference input, and how to build it."""

    name: str
    """Registry name, e.g. 'lenet5'."""
    description: str
    """One line for `parnn models`."""
    default_input_shape: tuple[int, ...]
    """Input (C, H, W) of the reference configuration, without the batch dimension."""
    default_num_classes: int
    """Classes of the reference configuration."""
    builder: Builder
    """(input_shape, num_classes) -> nn.Sequential of named cuttable units."""
    input_ranks: tuple[int, ...] = (3,)
    """Accepted lengths of input_shape: (3,) for (C, H, W); feed-forward models take any."""


_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mlp",
            description="Feed-forward, hidden 512-256-128, ReLU",
            default_input_shape=_MNIST,
            default_num_classes=10,
            builder=small.mlp,
            input_ranks=(1, 2, 3),
        ),
        ModelSpec(
            name="lenet5",
            description="LeNet-5, ReLU + max pool; input >= 12x12",
            default_input_shape=_MNIST,
            default_num_classes=10,
            builder=small.lenet5,
        ),
        ModelSpec(
            name="alexnet",
            description="AlexNet as torchvision; input >= 15x15",
            default_input_shape=_IMAGENET,
            default_num_classes=1000,
            builder=classic.alexnet,
        ),
        ModelSpec(
            name="vgg16",
            description="VGG-16 (config D); head sized to input",
            default_input_shape=_IMAGENET,
            default_num_classes=1000,
            builder=classic.vgg16,
        ),
        ModelSpec(
            name="resnet50",
            description="ResNet-50 v1.5; a unit per bottleneck",
            default_input_shape=_IMAGENET,
            default_num_classes=1000,
            builder=resnet.resnet50,
        ),
        ModelSpec(
            name="mobilenetv2",
            description="MobileNetV2 1.0; a unit per block",
            default_input_shape=_IMAGENET,
            default_num_classes=1000,
            builder=mobilenet.mobilenetv2,
        ),
        ModelSpec(
            name="dummy16",
            description="16 identical Linear(1024, 1024)+ReLU units",
            default_input_shape=(1, 32, 32),
            default_num_classes=10,
            builder=small.dummy16,
            input_ranks=(1, 2, 3),
        ),
    )
}


def model_names() -> tuple[str, ...]:
    """Names of the zoo models, in the order `parnn models` lists them."""
    return tuple(_SPECS)


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a zoo model; ModelError listing the valid names when unknown."""
    try:
        return _SPECS[name]
    except KeyError:
        valid = ", ".join(_SPECS)
        raise ModelError(
            f"unknown model {name!r}: choose one of {valid}, or give a user model as "
            "'path/to/file.py:build' or 'package.module:build'"
        ) from None


def build_model(
    name: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
) -> nn.Sequential:
    """Build a model as an nn.Sequential of named cuttable units (its direct children).

    ``name`` is a zoo name (see :func:`model_names`) or a user model 'path/file.py:build' /
    'package.module:build'. ``input_shape`` is (C, H, W) without the batch dimension and
    ``num_classes`` the number of logits; both default to the model's reference
    configuration. Weights come from torch's global generator: seed before calling.
    """
    if is_user_spec(name):
        return build_user_model(name, input_shape=input_shape, num_classes=num_classes)
    spec = get_model_spec(name)
    shape = check_input_shape(
        name,
        spec.default_input_shape if input_shape is None else input_shape,
        ranks=spec.input_ranks,
    )
    classes = check_num_classes(
        name, spec.default_num_classes if num_classes is None else num_classes
    )
    return spec.builder(shape, classes)
