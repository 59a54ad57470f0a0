"""synthetic: shapes, determinism by seed, and that it can be learned."""

from __future__ import annotations

import pytest
import torch

from parnn.data import load_dataset
from parnn.errors import DataError


def test_defaults() -> None:
    dataset = load_dataset("synthetic")
    assert dataset.inputs.shape == (1024, 3, 32, 32)
    assert dataset.inputs.dtype == torch.float32 and dataset.targets.dtype == torch.int64
    assert dataset.num_classes == 10 and dataset.name == "synthetic"
    assert all(count > 50 for count in dataset.class_counts())


def test_shape_classes_and_samples() -> None:
    dataset = load_dataset("synthetic", input_shape=(1, 28, 28), num_classes=4, num_samples=50)
    assert dataset.inputs.shape == (50, 1, 28, 28)
    assert dataset.num_classes == 4 and int(dataset.targets.max()) <= 3


def test_deterministic_by_seed() -> None:
    first = load_dataset("synthetic", num_samples=64, seed=3)
    again = load_dataset("synthetic", num_samples=64, seed=3)
    torch.testing.assert_close(first.inputs, again.inputs, rtol=0, atol=0)
    assert torch.equal(first.targets, again.targets)
    other = load_dataset("synthetic", num_samples=64, seed=4)
    assert not torch.equal(first.inputs, other.inputs)
    test = load_dataset("synthetic", num_samples=64, seed=3, split="test")
    assert not torch.equal(first.inputs, test.inputs)
    # more samples extend the same stream of labels
    longer = load_dataset("synthetic", num_samples=128, seed=3)
    assert torch.equal(longer.targets[:64], first.targets)


def _class_means(inputs: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    flat = inputs.flatten(1)  # (N, C*H*W)
    return torch.stack([flat[targets == label].mean(0) for label in range(num_classes)])


def test_learnable_from_train_to_test() -> None:
    train = load_dataset("synthetic", input_shape=(3, 16, 16), num_samples=512, seed=1)
    test = load_dataset("synthetic", input_shape=(3, 16, 16), num_samples=256, seed=1, split="test")
    centroids = _class_means(train.inputs, train.targets, train.num_classes)  # (K, D)
    predicted = torch.cdist(test.inputs.flatten(1), centroids).argmin(1)
    accuracy = float((predicted == test.targets).float().mean())
    assert accuracy > 0.9
    # ... and the labels carry the signal: shuffled labels give chance level
    shuffled = train.targets[torch.randperm(len(train))]
    centroids = _class_means(train.inputs, shuffled, train.num_classes)
    predicted = torch.cdist(test.inputs.flatten(1), centroids).argmin(1)
    assert float((predicted == test.targets).float().mean()) < 0.4


def test_a_linear_model_learns_it() -> None:
    data = load_dataset("synthetic", input_shape=(1, 8, 8), num_classes=4, num_samples=256)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(data.inputs), data.targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_rejects_bad_settings() -> None:
    with pytest.raises(DataError, match="num_classes >= 2"):
        load_dataset("synthetic", num_classes=1)
    with pytest.raises(DataError, match="seed"):
        load_dataset("synthetic", seed=-1)
    with pytest.raises(DataError, match="input_shape"):
        load_dataset("synthetic", input_shape=(3, 32))
