"""digits (scikit-learn's bundled 8x8 digits), ArrayDataset and load_dataset's checks."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from parnn.data import ArrayDataset, dataset_names, load_dataset
from parnn.errors import DataError, ParnnError


def test_digits_native_shape_and_labels() -> None:
    dataset = load_dataset("digits")
    assert isinstance(dataset, ArrayDataset)
    assert dataset.name == "digits"
    assert len(dataset) == 1797
    assert dataset.inputs.shape == (1797, 1, 8, 8)
    assert dataset.inputs.dtype == torch.float32
    assert dataset.targets.dtype == torch.int64
    assert dataset.input_shape == (1, 8, 8)
    assert dataset.num_classes == 10
    counts = dataset.class_counts()
    assert sum(counts) == 1797 and min(counts) > 150
    # standardised over all images
    assert abs(float(dataset.inputs.mean())) < 1e-4
    assert abs(float(dataset.inputs.std()) - 1.0) < 1e-3


def test_digits_resize_is_bilinear_and_repeats_channels() -> None:
    native = load_dataset("digits")
    grey = load_dataset("digits", input_shape=(1, 28, 28))
    assert grey.input_shape == (1, 28, 28)
    expected = F.interpolate(native.inputs, size=(28, 28), mode="bilinear", align_corners=False)
    torch.testing.assert_close(grey.inputs, expected)
    rgb = load_dataset("digits", input_shape=[3, 28, 28])
    assert rgb.inputs.shape == (1797, 3, 28, 28)
    for channel in range(3):
        torch.testing.assert_close(rgb.inputs[:, channel : channel + 1], grey.inputs)
    torch.testing.assert_close(rgb.targets, native.targets)


def test_num_samples_keeps_the_first_samples() -> None:
    full = load_dataset("digits")
    head = load_dataset("digits", num_samples=100)
    assert len(head) == 100
    torch.testing.assert_close(head.inputs, full.inputs[:100])
    torch.testing.assert_close(head.targets, full.targets[:100])


def test_loads_are_independent_copies() -> None:
    first = load_dataset("digits")
    first.inputs.zero_()
    assert float(load_dataset("digits").inputs.abs().sum()) > 0


def test_getitem_subset_and_dataloader() -> None:
    dataset = load_dataset("digits")
    x, y = dataset[5]
    assert x.shape == (1, 8, 8) and y.dtype == torch.int64
    torch.testing.assert_close(x, dataset.inputs[5])
    part = dataset.subset([5, 0, 7])
    assert len(part) == 3 and part.name == "digits" and part.num_classes == 10
    torch.testing.assert_close(part.inputs[0], dataset.inputs[5])
    torch.testing.assert_close(part.targets, dataset.targets[torch.tensor([5, 0, 7])])
    assert len(dataset.subset(torch.arange(10))) == 10
    inputs, targets = next(iter(DataLoader(dataset, batch_size=32)))
    assert inputs.shape == (32, 1, 8, 8) and targets.shape == (32,)
    assert "digits" in repr(dataset)


def test_subset_rejects_out_of_range_indices() -> None:
    dataset = load_dataset("digits", num_samples=10)
    with pytest.raises(DataError, match=r"0\.\.9"):
        dataset.subset([3, 10])


def test_array_dataset_checks_shapes_and_labels() -> None:
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        ArrayDataset(torch.zeros(4, 8, 8), torch.zeros(4), num_classes=2, name="x")
    with pytest.raises(DataError, match="targets must be"):
        ArrayDataset(torch.zeros(4, 1, 8, 8), torch.zeros(3), num_classes=2, name="x")
    with pytest.raises(DataError, match=r"0\.\.1"):
        ArrayDataset(torch.zeros(2, 1, 2, 2), torch.tensor([0, 2]), num_classes=2, name="x")


def test_dataset_names() -> None:
    assert dataset_names() == ("digits", "mnist", "cifar10", "synthetic")


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert isinstance(error.value, ParnnError)
    return message


def test_unknown_dataset_lists_the_valid_names() -> None:
    with pytest.raises(DataError) as error:
        load_dataset("imagenet")
    message = _one_line(error)
    assert "'imagenet'" in message
    for name in dataset_names():
        assert name in message


@pytest.mark.parametrize("shape", [(28, 28), (1, 0, 28), (1, 28, -1), ("a", 2, 2), (1, 2, 3, 4)])
def test_bad_input_shape(shape: tuple[object, ...]) -> None:
    with pytest.raises(DataError) as error:
        load_dataset("digits", input_shape=shape)  # type: ignore[arg-type]
    assert "input_shape" in _one_line(error)


def test_digits_rejects_test_split_wrong_classes_and_too_many_samples() -> None:
    with pytest.raises(DataError, match="train_val_split"):
        load_dataset("digits", split="test")
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("digits", split="validation")
    with pytest.raises(DataError, match="10 classes"):
        load_dataset("digits", num_classes=5)
    with pytest.raises(DataError, match="1797"):
        load_dataset("digits", num_samples=5000)
    with pytest.raises(DataError, match="num_samples"):
        load_dataset("digits", num_samples=0)
    assert load_dataset("digits", num_classes=10).num_classes == 10


def test_ignored_data_dir_is_warned(caplog: pytest.LogCaptureFixture, tmp_path: object) -> None:
    with caplog.at_level(logging.WARNING, logger="parnn.data"):
        load_dataset("digits", data_dir=str(tmp_path), num_samples=4)
    assert "ignored" in caplog.text


def test_the_digits_file_read_without_scikit_learn_equals_load_digits() -> None:
    """parnn reads scikit-learn's digits.csv.gz itself (importing scikit-learn costs ~0.6 s
    of every short run's start-up); the arrays are exactly what load_digits returns."""
    from sklearn.datasets import load_digits

    from parnn.data.digits import read_digits_file

    found = read_digits_file()
    assert found is not None
    bunch = load_digits()
    np.testing.assert_array_equal(found[0], bunch.images)
    np.testing.assert_array_equal(found[1], bunch.target)
