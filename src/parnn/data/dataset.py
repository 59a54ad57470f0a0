"""The one dataset type: images and labels held in memory as tensors.

Every dataset parnn uses fits in memory, so engines index :attr:`ArrayDataset.inputs` and
:attr:`ArrayDataset.targets` directly with index tensors instead of going through a
``DataLoader``; ``__getitem__`` is there for the code that does want one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from parnn.errors import DataError

__all__ = ["ArrayDataset", "Indices"]

Indices = Sequence[int] | np.ndarray | torch.Tensor
"""Anything :meth:`ArrayDataset.subset` accepts: a list, a numpy array or a tensor of ints."""


class ArrayDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images ``inputs`` (N, C, H, W) float32 and labels ``targets`` (N,) int64.

    ``num_classes`` is the number of classes of the task (labels lie in
    ``0 .. num_classes - 1``; a subset may miss some), ``name`` the dataset's name
    (``'digits'``, ``'mnist'``...) and ``source`` a short human description of where the
    data came from (files, split, seed), for logs and results.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        num_classes: int,
        name: str,
        source: str = "",
    ) -> None:
        if inputs.dim() != 4:
            raise DataError(
                f"dataset {name!r}: inputs must be (N, C, H, W), got shape {tuple(inputs.shape)}"
            )
        if targets.dim() != 1 or targets.shape[0] != inputs.shape[0]:
            raise DataError(
                f"dataset {name!r}: targets must be (N,) with N = {inputs.shape[0]} like the "
                f"inputs, got shape {tuple(targets.shape)}"
            )
        if num_classes < 1:
            raise DataError(f"dataset {name!r}: num_classes must be >= 1, got {num_classes}")
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
            raise DataError(
                f"dataset {name!r}: labels must lie in 0..{num_classes - 1}, "
                f"got {int(targets.min())}..{int(targets.max())}"
            )
        self.inputs = inputs.to(torch.float32).contiguous()  # (N, C, H, W)
        self.targets = targets.to(torch.int64).contiguous()  # (N,)
        self.num_classes = int(num_classes)
        self.name = name
        self.source = source

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one input, (C, H, W)."""
        channels, height, width = self.inputs.shape[1:]
        return (int(channels), int(height), int(width))

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]

    def subset(self, indices: Indices) -> ArrayDataset:
        """A new dataset holding the samples at ``indices`` (in that order; data copied)."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.int64).reshape(-1)
        if index.numel() and (int(index.min()) < -len(self) or int(index.max()) >= len(self)):
            raise DataError(
                f"dataset {self.name!r}: subset indices must lie in 0..{len(self) - 1}, "
                f"got {int(index.min())}..{int(index.max())}"
            )
        return ArrayDataset(
            self.inputs[index],
            self.targets[index],
            num_classes=self.num_classes,
            name=self.name,
            source=self.source,
        )

    def class_counts(self) -> list[int]:
        """How many samples each class has, index = label."""
        return [int(c) for c in torch.bincount(self.targets, minlength=self.num_classes)]

    def __repr__(self) -> str:
        shape = "x".join(str(size) for size in self.input_shape)
        return (
            f"ArrayDataset(name={self.name!r}, samples={len(self)}, input_shape={shape}, "
            f"num_classes={self.num_classes})"
        )
