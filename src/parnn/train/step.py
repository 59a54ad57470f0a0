"""One optimizer step and one evaluation pass: the reference every engine reproduces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from parnn.errors import ConfigError
from parnn.train.batches import dataset_tensors

__all__ = ["EvalResult", "evaluate", "train_step"]


def train_step(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
) -> float:
    """zero_grad, forward, mean loss over the mini-batch, backward, optimizer step.

    Returns the mini-batch loss (before the update). The LR schedule is stepped by the
    caller, once per call.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = criterion(model(inputs), targets)  # scalar: mean over the B samples
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Loss and accuracy of a model on a dataset."""

    loss: float
    """Mean cross-entropy per sample."""
    accuracy: float
    """Fraction of samples whose arg-max logit is the target, in [0, 1]."""
    per_class_accuracy: tuple[float | None, ...]
    """Accuracy among the samples of each class; None for a class with no sample."""
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "per_class_accuracy": list(self.per_class_accuracy),
            "num_samples": self.num_samples,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> EvalResult:
        return cls(
            loss=float(record["loss"]),
            accuracy=float(record["accuracy"]),
            per_class_accuracy=tuple(record["per_class_accuracy"]),
            num_samples=int(record["num_samples"]),
        )


def evaluate(
    model: nn.Module,
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
    *,
    batch_size: int = 256,
) -> EvalResult:
    """Loss, accuracy and per-class accuracy of ``model`` on ``dataset``.

    Runs in eval mode under ``no_grad`` and puts the model back in the mode it was in.
    """
    inputs, targets = dataset_tensors(dataset)
    num_samples = int(targets.shape[0])
    if num_samples == 0:
        raise ConfigError("cannot evaluate on an empty dataset")
    if batch_size <= 0:
        raise ConfigError(f"evaluation batch size {batch_size} must be > 0")
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    correct_per_class = torch.zeros(1, dtype=torch.int64)  # (num_classes,) after one batch
    count_per_class = torch.zeros(1, dtype=torch.int64)  # (num_classes,) after one batch
    try:
        with torch.no_grad():
            for start in range(0, num_samples, batch_size):
                x = inputs[start : start + batch_size]
                y = targets[start : start + batch_size]
                logits = model(x)  # (B, num_classes)
                loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                num_classes = int(logits.shape[1])
                hit = logits.argmax(dim=1) == y  # (B,)
                correct_per_class = correct_per_class + torch.bincount(
                    y[hit], minlength=num_classes
                )
                count_per_class = count_per_class + torch.bincount(y, minlength=num_classes)
    finally:
        model.train(was_training)
    per_class = tuple(
        float(c) / int(n) if int(n) > 0 else None
        for c, n in zip(correct_per_class.tolist(), count_per_class.tolist(), strict=True)
    )
    accuracy = float(correct_per_class.sum()) / num_samples
    loss = loss_sum / num_samples
    return EvalResult(
        loss=loss, accuracy=accuracy, per_class_accuracy=per_class, num_samples=num_samples
    )
