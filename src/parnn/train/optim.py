"""Optimizers and the loss: the two pieces every engine builds exactly as the reference does."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parnn.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where an optimizer is made: the config stays light
    import torch
    from torch import nn

__all__ = ["OPTIMIZERS", "OptimizerConfig", "make_criterion", "make_optimizer"]

OPTIMIZERS = ("sgd", "adam")


@dataclass(kw_only=True, slots=True)
class OptimizerConfig:
    """Which optimizer to build and its hyper-parameters."""

    name: str = "sgd"
    """'sgd' (with momentum) or 'adam'."""
    lr: float = 0.05
    """Peak learning rate; the LR schedule scales it per step."""
    momentum: float = 0.9
    """SGD momentum in [0, 1); ignored by Adam (a warning says so when it is not the default)."""
    weight_decay: float = 0.0
    """L2 penalty added by the optimizer, >= 0."""

    def __post_init__(self) -> None:
        self.name = str(self.name).lower()
        if self.name not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.name!r}: choose one of {', '.join(OPTIMIZERS)}"
            )
        if not self.lr > 0:
            raise ConfigError(f"learning rate {self.lr} must be > 0, e.g. --lr 0.05")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum {self.momentum} must be in [0, 1), e.g. --momentum 0.9")
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight decay {self.weight_decay} must be >= 0")

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
        }


def make_optimizer(
    params: Iterable[nn.Parameter] | Iterable[torch.Tensor], config: OptimizerConfig
) -> torch.optim.Optimizer:
    """Build the optimizer ``config`` names over ``params`` (e.g. ``model.parameters()``).

    Engines that hold a slice of the model (a pipeline stage) pass that slice's parameters;
    the update of each parameter is then the one the reference applies.
    """
    import torch

    if config.name == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def make_criterion() -> nn.CrossEntropyLoss:
    """Cross-entropy averaged over the mini-batch: the loss every engine optimises."""
    from torch import nn

    return nn.CrossEntropyLoss(reduction="mean")
