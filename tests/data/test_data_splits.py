"""train_val_split (stratified, exact sizes) and kfold_splits (disjoint, covering)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parnn.data import ArrayDataset, kfold_splits, load_dataset, train_val_split
from parnn.data.splits import stratified_val_indices
from parnn.errors import ConfigError


def indexed_dataset(labels: list[int], num_classes: int = 10) -> ArrayDataset:
    """Sample i has every pixel equal to i, so a split's members can be read back."""
    count = len(labels)
    inputs = torch.arange(count, dtype=torch.float32).view(count, 1, 1, 1)
    return ArrayDataset(inputs, torch.tensor(labels), num_classes=num_classes, name="indexed")


def members(dataset: ArrayDataset) -> list[int]:
    return [int(value) for value in dataset.inputs.view(-1)]


def test_split_sizes_disjoint_and_covering() -> None:
    labels = [index % 10 for index in range(1000)]
    train, val = train_val_split(indexed_dataset(labels), val_fraction=0.2, seed=0)
    assert (len(train), len(val)) == (800, 200)
    assert set(members(train)).isdisjoint(members(val))
    assert sorted(members(train) + members(val)) == list(range(1000))
    # original order kept, classes balanced
    assert members(val) == sorted(members(val)) and members(train) == sorted(members(train))
    assert val.class_counts() == [20] * 10
    assert train.name == "indexed" and train.num_classes == 10


def test_split_deterministic_by_seed() -> None:
    dataset = load_dataset("digits")
    first_train, first_val = train_val_split(dataset, seed=5)
    again_train, again_val = train_val_split(dataset, seed=5)
    assert torch.equal(first_val.inputs, again_val.inputs)
    assert torch.equal(first_train.targets, again_train.targets)
    _, other_val = train_val_split(dataset, seed=6)
    assert not torch.equal(first_val.inputs, other_val.inputs)
    assert len(first_val) == round(1797 * 0.2)


def test_split_is_stratified_on_unbalanced_classes() -> None:
    labels = [0] * 90 + [1] * 10
    _, val = train_val_split(indexed_dataset(labels, num_classes=2), val_fraction=0.3)
    assert val.class_counts() == [27, 3]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        train_val_split(indexed_dataset([0, 1, 0, 1]), val_fraction=fraction)


def test_split_needs_a_sample_on_each_side() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        train_val_split(indexed_dataset([0, 1]), val_fraction=0.1)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=2, max_size=200),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**31),
)
def test_stratified_indices_have_the_exact_total(
    labels: list[int], fraction: float, seed: int
) -> None:
    array = np.array(labels)
    num_val = min(max(round(len(labels) * fraction), 1), len(labels) - 1)
    chosen = stratified_val_indices(array, num_val, seed=seed)
    assert chosen.dtype == np.int64 and len(chosen) == num_val
    assert len(np.unique(chosen)) == num_val
    for label in set(labels):
        share = np.count_nonzero(array == label) * num_val / len(labels)
        assert abs(np.count_nonzero(array[chosen] == label) - share) < 1


@settings(max_examples=60, deadline=None)
@given(num_samples=st.integers(2, 300), data=st.data())
def test_kfold_folds_are_disjoint_and_cover(num_samples: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(2, min(num_samples, 12)))
    seed = data.draw(st.integers(0, 1000))
    splits = kfold_splits(num_samples, k, seed=seed)
    assert len(splits) == k
    all_val = np.concatenate([val for _, val in splits])
    assert sorted(all_val.tolist()) == list(range(num_samples))
    sizes = [len(val) for _, val in splits]
    assert max(sizes) - min(sizes) <= 1
    for train, val in splits:
        assert train.dtype == np.int64 and val.dtype == np.int64
        assert np.intersect1d(train, val).size == 0
        assert len(train) + len(val) == num_samples


def test_kfold_deterministic_by_seed() -> None:
    first = kfold_splits(50, 5, seed=1)
    again = kfold_splits(50, 5, seed=1)
    other = kfold_splits(50, 5, seed=2)
    for (train_a, val_a), (train_b, val_b) in zip(first, again, strict=True):
        assert np.array_equal(train_a, train_b) and np.array_equal(val_a, val_b)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(("num_samples", "k"), [(10, 1), (10, 0), (3, 4)])
def test_kfold_rejects_bad_k(num_samples: int, k: int) -> None:
    with pytest.raises(ConfigError, match=f"k={k}") as error:
        kfold_splits(num_samples, k)
    assert "\n" not in str(error.value)
