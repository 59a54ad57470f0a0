"""cifar10: small batches written in the python-version format, layouts and errors."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from parnn.data import load_dataset
from parnn.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD
from parnn.errors import DataError


def write_batch(
    path: Path, count: int, *, seed: int, protocol: int = 2
) -> tuple[np.ndarray, list[int]]:
    """One batch as CIFAR-10 ships it: b'data' (N, 3072) uint8, b'labels' a list of ints."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
    labels = [int(label) for label in rng.integers(0, 10, size=count)]
    payload = {
        b"batch_label": b"training batch",
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(count)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        pickle.dump(payload, stream, protocol=protocol)
    return data, labels


def write_cifar(
    directory: Path, *, train_batches: int = 5, count: int = 6, protocol: int = 2
) -> None:
    for index in range(1, train_batches + 1):
        write_batch(directory / f"data_batch_{index}", count, seed=index, protocol=protocol)
    write_batch(directory / "test_batch", count, seed=99, protocol=protocol)


def denormalise(inputs: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (inputs * std + mean) * 255.0


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_train_concatenates_the_five_batches(tmp_path: Path, protocol: int) -> None:
    write_cifar(tmp_path, count=6, protocol=protocol)
    dataset = load_dataset("cifar10", data_dir=tmp_path)
    assert dataset.inputs.shape == (30, 3, 32, 32)
    assert dataset.input_shape == (3, 32, 32) and dataset.num_classes == 10
    first, labels = write_batch(tmp_path / "again", 6, seed=1)
    # channel-major layout: 1024 red, then green, then blue values, row-major
    raw = torch.from_numpy(first.reshape(6, 3, 32, 32).astype(np.float32))
    torch.testing.assert_close(denormalise(dataset.inputs[:6]), raw, atol=1e-3, rtol=0)
    assert dataset.targets[:6].tolist() == labels
    assert dataset.targets.dtype == torch.int64


def test_test_split_and_subfolder_layout(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar-10-batches-py", count=4)
    test = load_dataset("cifar10", data_dir=tmp_path, split="test")
    data, labels = write_batch(tmp_path / "again", 4, seed=99)
    raw = torch.from_numpy(data.reshape(4, 3, 32, 32).astype(np.float32))
    torch.testing.assert_close(denormalise(test.inputs), raw, atol=1e-3, rtol=0)
    assert test.targets.tolist() == labels


def test_missing_train_batches_are_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_cifar(tmp_path, train_batches=2, count=3)
    with caplog.at_level(logging.WARNING, logger="parnn.data"):
        dataset = load_dataset("cifar10", data_dir=tmp_path)
    assert len(dataset) == 6
    assert "data_batch_3" in caplog.text


def test_resize_to_grey_and_bad_channel_count(tmp_path: Path) -> None:
    write_cifar(tmp_path, train_batches=1, count=4)
    grey = load_dataset("cifar10", data_dir=tmp_path, input_shape=(1, 16, 16))
    assert grey.inputs.shape == (4, 1, 16, 16)
    with pytest.raises(DataError, match="3 channels"):
        load_dataset("cifar10", data_dir=tmp_path, input_shape=(2, 32, 32))


def test_missing_directory_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10")
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="--data-dir") as error:
        load_dataset("cifar10", data_dir=missing)
    assert str(missing) in str(error.value)
    with pytest.raises(DataError) as error:
        load_dataset("cifar10", data_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path) in message and "data_batch_5" in message
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", data_dir=tmp_path, split="test")


def test_corrupt_pickle(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError) as error:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo should-not-run",))


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([1, 2, 3], "pickled dict"),
        ({b"data": np.zeros((2, 3072), dtype=np.uint8)}, "b'labels'"),
        ({b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}, "3072"),
        ({b"data": np.zeros((2, 3072), dtype=np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 10]}, "expected 0..9"),
    ],
)
def test_malformed_batches(tmp_path: Path, payload: object, expected: str) -> None:
    (tmp_path / "test_batch").write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=expected):
        load_dataset("cifar10", data_dir=tmp_path, split="test")
