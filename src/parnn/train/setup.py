"""From names to a ready run: load and split the dataset, seed and build the model.

The glue every command shares (``parnn train``, ``parnn demo``, the engines' commands), so
that the same flags give the same model, data and split everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from parnn.data import ArrayDataset, load_dataset, train_val_split
from parnn.errors import ConfigError
from parnn.models import build_model, count_parameters

__all__ = ["DIGITS_INPUT_SHAPE", "TrainingSetup", "check_batch_size", "setup_training"]

DIGITS_INPUT_SHAPE = (1, 28, 28)
"""digits (8x8) is resized to LeNet-5/MNIST size unless an input shape is asked for."""


@dataclass(frozen=True, slots=True)
class TrainingSetup:
    """A freshly seeded model and the data it trains and validates on."""

    model: nn.Sequential
    train_data: ArrayDataset
    val_data: ArrayDataset
    model_name: str
    data_name: str
    input_shape: tuple[int, ...]
    """(C, H, W) of the samples the model takes."""
    num_classes: int
    num_parameters: int

    def describe(self) -> dict[str, object]:
        return {
            "model": self.model_name,
            "data": self.data_name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "parameters": self.num_parameters,
            "train_samples": len(self.train_data),
            "val_samples": len(self.val_data),
        }


def setup_training(
    model: str,
    data: str,
    *,
    data_dir: str | Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    num_samples: int | None = None,
) -> TrainingSetup:
    """Load ``data`` (resized to ``input_shape``; digits defaults to 1x28x28), hold out a
    stratified ``val_fraction`` (by ``seed``), then ``torch.manual_seed(seed)`` and build
    ``model`` for the data's input shape and class count."""
    data_key = data.strip().lower()
    if input_shape is None and data_key == "digits":
        input_shape = DIGITS_INPUT_SHAPE
    dataset = load_dataset(
        data_key, data_dir=data_dir, input_shape=input_shape, num_samples=num_samples, seed=seed
    )
    train_data, val_data = train_val_split(dataset, val_fraction=val_fraction, seed=seed)
    torch.manual_seed(seed)
    network = build_model(model, input_shape=dataset.input_shape, num_classes=dataset.num_classes)
    return TrainingSetup(
        model=network,
        train_data=train_data,
        val_data=val_data,
        model_name=model,
        data_name=data_key,
        input_shape=tuple(dataset.input_shape),
        num_classes=dataset.num_classes,
        num_parameters=count_parameters(network),
    )


def check_batch_size(
    batch_size: int, train_samples: int, *, copies: int = 1, flag: str = "--batch-size"
) -> None:
    """Refuse a step that needs more samples than the training set holds.

    One step takes ``batch_size x copies`` samples (``copies``: ranks that each take a
    whole ``batch_size``); the error names the largest valid ``batch_size``."""
    if batch_size * copies <= train_samples:
        return
    largest = train_samples // copies
    per = f" ({copies} processes each take a batch)" if copies > 1 else ""
    raise ConfigError(
        f"{flag} {batch_size} is larger than the training set allows: {train_samples} "
        f"training samples{per}; the largest valid value is {largest}"
        + ("" if largest >= 1 else "; use more data or fewer processes")
    )
