"""Deterministic train/validation splits and K-fold splits, both by seed.

``train_val_split`` is *stratified*: each class gives the same fraction of its samples to
validation (up to rounding), and the total validation size is exactly
``round(len(dataset) * val_fraction)`` (MNIST's 10,000 test images -> 8,000 / 2,000).
``kfold_splits`` sees only a sample count, so its folds are a plain shuffle cut into
``k`` nearly equal parts (sizes differ by at most one).
"""

from __future__ import annotations

import numpy as np

from parnn.data.dataset import ArrayDataset
from parnn.errors import ConfigError

__all__ = ["kfold_splits", "stratified_val_indices", "train_val_split"]


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")


def stratified_val_indices(labels: np.ndarray, num_val: int, *, seed: int) -> np.ndarray:
    """Indices (sorted, int64) of ``num_val`` samples, spread over the classes in proportion.

    Each class gets ``floor(count * num_val / N)`` places; the places left over go to the
    classes with the largest remainders (ties: lower label first). Within a class the
    samples are drawn by a seeded shuffle.
    """
    labels = np.asarray(labels, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * num_val / labels.shape[0]
    quotas = np.floor(exact).astype(np.int64)
    leftover = num_val - int(quotas.sum())
    by_remainder = np.lexsort((classes, -(exact - quotas)))  # largest remainder first
    quotas[by_remainder[:leftover]] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.permutation(np.flatnonzero(labels == label))[:quota]
        for label, quota in zip(classes, quotas, strict=True)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def train_val_split(
    dataset: ArrayDataset, *, val_fraction: float = 0.2, seed: int = 0
) -> tuple[ArrayDataset, ArrayDataset]:
    """Split ``dataset`` into (train, val), stratified by class, deterministic by ``seed``.

    Both keep the original sample order; the validation set has exactly
    ``round(len(dataset) * val_fraction)`` samples.
    """
    _check_seed(seed)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(
            f"val_fraction must lie strictly between 0 and 1, got {val_fraction}; e.g. 0.2"
        )
    total = len(dataset)
    num_val = round(total * val_fraction)
    if num_val < 1 or num_val > total - 1:
        raise ConfigError(
            f"val_fraction {val_fraction} of {total} samples leaves {num_val} for validation "
            f"and {total - num_val} for training; both need at least 1: use more samples or "
            f"another fraction"
        )
    val_index = stratified_val_indices(dataset.targets.numpy(), num_val, seed=seed)
    is_val = np.zeros(total, dtype=bool)
    is_val[val_index] = True
    train_index = np.flatnonzero(~is_val).astype(np.int64)
    return dataset.subset(train_index), dataset.subset(val_index)


def kfold_splits(num_samples: int, k: int, *, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` pairs (train_idx, val_idx) of sorted int64 arrays over ``range(num_samples)``.

    The validation folds are disjoint and together cover every sample once; each train set
    is the complement of its fold. Deterministic by ``seed``.
    """
    _check_seed(seed)
    if k < 2 or k > num_samples:
        raise ConfigError(
            f"k-fold needs 2 <= k <= the number of samples ({num_samples}), got k={k}; try k=5"
        )
    order = np.random.default_rng(seed).permutation(num_samples)
    folds = np.array_split(order, k)
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    for fold_index, fold in enumerate(folds):
        val_index = np.sort(fold).astype(np.int64)
        rest = [other for index, other in enumerate(folds) if index != fold_index]
        train_index = np.sort(np.concatenate(rest)).astype(np.int64)
        splits.append((train_index, val_index))
    return splits
