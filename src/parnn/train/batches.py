"""The data order: which samples form each mini-batch of each epoch.

The order is a pure function of ``(seed, epoch)`` drawn from a local ``torch.Generator``,
never from the global RNG, so every engine (pipeline, DDP, Hogwild, K-fold jobs) can rebuild
the reference trainer's batches anywhere, and a resumed run needs only (epoch, batch index).
:func:`batch_stream` walks that order step by step (a process's part of each batch when
several processes share it) and is the batch source of the training loop
(:mod:`parnn.train.loop`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from parnn.errors import ConfigError

__all__ = [
    "Batch",
    "batch_indices",
    "batch_stream",
    "dataset_tensors",
    "epoch_order",
    "num_batches",
]


def _order_seed(seed: int, epoch: int) -> int:
    # Mix (seed, epoch) so that neighbouring seeds and epochs give unrelated permutations.
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1  # a 62-bit non-negative seed


def epoch_order(num_samples: int, *, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``range(num_samples)`` (int64), the same for the same (seed, epoch)."""
    if num_samples <= 0:
        raise ConfigError(f"cannot order {num_samples} samples: the dataset is empty")
    if seed < 0 or epoch < 0:
        raise ConfigError(f"seed {seed} and epoch {epoch} must be >= 0")
    generator = torch.Generator().manual_seed(_order_seed(seed, epoch))
    return torch.randperm(num_samples, generator=generator)


def num_batches(num_samples: int, batch_size: int, *, drop_last: bool = False) -> int:
    """Mini-batches per epoch: ceil(N / B), or floor(N / B) with ``drop_last``."""
    if batch_size <= 0:
        raise ConfigError(f"batch size {batch_size} must be > 0, e.g. --batch-size 64")
    if drop_last:
        count = num_samples // batch_size
        if count == 0:
            raise ConfigError(
                f"batch size {batch_size} exceeds the {num_samples} training samples and "
                "drop_last leaves no batch: use a smaller batch size"
            )
        return count
    return -(-num_samples // batch_size)


def batch_indices(
    num_samples: int, batch_size: int, *, seed: int, epoch: int, drop_last: bool = False
) -> list[torch.Tensor]:
    """The sample indices of every mini-batch of ``epoch``, in order.

    The epoch's permutation cut into runs of ``batch_size``; the last batch is smaller
    unless ``drop_last`` drops it.
    """
    count = num_batches(num_samples, batch_size, drop_last=drop_last)
    order = epoch_order(num_samples, seed=seed, epoch=epoch)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(count)]


@dataclass(frozen=True, slots=True)
class Batch:
    """The samples one process takes at one step of a run."""

    step: int
    """0-based step of the run."""
    epoch: int
    round_indices: torch.Tensor
    """The whole mini-batch of the step, int64 (L,): what the processes take together."""
    indices: torch.Tensor
    """This process's part of it, int64 (n,), 0 <= n <= ceil(L / parts); the whole
    mini-batch for a single process."""
    last_of_epoch: bool
    """The epoch's last mini-batch."""

    @property
    def round_samples(self) -> int:
        return int(self.round_indices.numel())


def batch_stream(
    num_samples: int,
    batch_size: int,
    *,
    seed: int,
    total_steps: int,
    drop_last: bool = False,
    start_step: int = 0,
    part: int = 0,
    num_parts: int = 1,
) -> Iterator[Batch]:
    """Steps ``start_step .. total_steps - 1`` of the reference order, epoch after epoch.

    With ``num_parts`` processes sharing each mini-batch, process ``part`` takes the
    ``part``-th of ``num_parts`` contiguous pieces whose sizes differ by at most one::

        step t  (L samples, L = batch_size except the last batch of an epoch)
        |---- part 0 ----|---- part 1 ----| ... |---- part N-1 ----|
            ceil(L/N)        ceil(L/N)              floor(L/N)

    A resumed run starts at ``start_step``: the step fixes the epoch and the batch.
    """
    if not 0 <= part < num_parts:
        raise ConfigError(f"part {part} of {num_parts} is out of range")
    per_epoch = num_batches(num_samples, batch_size, drop_last=drop_last)
    step = start_step
    while step < total_steps:
        epoch, first = divmod(step, per_epoch)
        batches = batch_indices(
            num_samples, batch_size, seed=seed, epoch=epoch, drop_last=drop_last
        )
        for position in range(first, per_epoch):
            if step >= total_steps:
                return
            whole = batches[position]
            piece = torch.tensor_split(whole, num_parts)[part] if num_parts > 1 else whole
            yield Batch(
                step=step,
                epoch=epoch,
                round_indices=whole,
                indices=piece,
                last_of_epoch=position == per_epoch - 1,
            )
            step += 1


def dataset_tensors(
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """All inputs (N, ...) and int64 targets (N,) of a dataset as two tensors.

    Uses ``.inputs``/``.targets`` (parnn's ArrayDataset) or ``.tensors`` (TensorDataset)
    without copying; any other map-style dataset is stacked item by item.
    """
    inputs = getattr(dataset, "inputs", None)
    targets = getattr(dataset, "targets", None)
    if isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor):
        return inputs, targets
    tensors = getattr(dataset, "tensors", None)
    if isinstance(tensors, tuple) and len(tensors) == 2:
        return tensors[0], tensors[1]
    items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    if not items:
        raise ConfigError("the dataset is empty: nothing to train or evaluate on")
    return (
        torch.stack([torch.as_tensor(x) for x, _ in items]),
        torch.as_tensor([int(y) for _, y in items], dtype=torch.int64),
    )
