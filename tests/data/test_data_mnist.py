"""mnist: IDX files raw and gzipped, the accepted layouts, the real test set, and each
corruption as a one-line DataError."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from parnn.data import load_dataset, train_val_split
from parnn.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, MNIST_MEAN, MNIST_STD, read_idx
from parnn.errors import DataError

REAL_HISTOGRAM = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """``array`` (uint8) as an IDX file: big-endian magic, big-endian sizes, data."""
    header = magic.to_bytes(4, "big") + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(
    directory: Path,
    prefix: str = "t10k",
    *,
    count: int = 12,
    gz: bool = False,
    seed: int = 0,
    separator: str = "-",
) -> tuple[np.ndarray, np.ndarray]:
    """Write a tiny ``prefix`` images/labels pair; return (images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for kind, idx, array, magic in (
        ("images", "idx3", images, IMAGES_MAGIC),
        ("labels", "idx1", labels, LABELS_MAGIC),
    ):
        data = idx_bytes(array, magic)
        path = directory / f"{prefix}-{kind}{separator}{idx}-ubyte{suffix}"
        path.write_bytes(gzip.compress(data) if gz else data)
    return images, labels


def expected_inputs(images: np.ndarray) -> torch.Tensor:
    return (
        torch.from_numpy(images.astype(np.float32)).unsqueeze(1) / 255.0 - MNIST_MEAN
    ) / MNIST_STD


# --- the real MNIST test set -------------------------------------------------------------


def test_real_mnist_test_split(mnist_dir: Path) -> None:
    dataset = load_dataset("mnist", data_dir=mnist_dir, split="test")
    assert dataset.inputs.shape == (10000, 1, 28, 28)
    assert dataset.input_shape == (1, 28, 28)
    assert dataset.class_counts() == REAL_HISTOGRAM
    assert dataset.num_classes == 10
    # background pixels (0) map to -mean/std; the normalised set is roughly centred
    assert float(dataset.inputs.min()) == pytest.approx(-MNIST_MEAN / MNIST_STD, abs=1e-5)
    assert abs(float(dataset.inputs.mean())) < 0.05


def test_real_mnist_train_falls_back_to_t10k_and_splits_8k_2k(
    mnist_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="parnn.data"):
        dataset = load_dataset("mnist", data_dir=str(mnist_dir))
    assert "t10k" in caplog.text
    assert "t10k" in dataset.source
    assert dataset.class_counts() == REAL_HISTOGRAM
    train, val = train_val_split(dataset, val_fraction=0.2, seed=0)
    assert (len(train), len(val)) == (8000, 2000)
    # stratified: each class gives a fifth of its images, up to rounding
    for total, held_out in zip(REAL_HISTOGRAM, val.class_counts(), strict=True):
        assert abs(held_out - total / 5) <= 1


# --- layouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_reads_raw_and_gz_files(tmp_path: Path, gz: bool) -> None:
    images, labels = write_mnist(tmp_path, gz=gz)
    dataset = load_dataset("mnist", data_dir=tmp_path, split="test")
    torch.testing.assert_close(dataset.inputs, expected_inputs(images))
    torch.testing.assert_close(dataset.targets, torch.from_numpy(labels.astype(np.int64)))


@pytest.mark.parametrize("subdir", ["MNIST/raw", "raw"])
def test_reads_torchvision_layout(tmp_path: Path, subdir: str) -> None:
    images, _ = write_mnist(tmp_path / subdir, gz=True)
    dataset = load_dataset("mnist", data_dir=tmp_path, split="test")
    torch.testing.assert_close(dataset.inputs, expected_inputs(images))
    assert str(tmp_path / subdir) in dataset.source


def test_reads_dotted_file_names(tmp_path: Path) -> None:
    images, _ = write_mnist(tmp_path, separator=".")
    dataset = load_dataset("mnist", data_dir=tmp_path, split="test")
    torch.testing.assert_close(dataset.inputs, expected_inputs(images))


def test_train_split_prefers_train_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train_images, _ = write_mnist(tmp_path, "train", count=20, seed=1)
    test_images, _ = write_mnist(tmp_path, "t10k", count=8, seed=2)
    with caplog.at_level(logging.WARNING, logger="parnn.data"):
        train = load_dataset("mnist", data_dir=tmp_path)
    assert caplog.text == ""
    torch.testing.assert_close(train.inputs, expected_inputs(train_images))
    test = load_dataset("mnist", data_dir=tmp_path, split="test")
    torch.testing.assert_close(test.inputs, expected_inputs(test_images))


def test_test_split_does_not_fall_back_to_train(tmp_path: Path) -> None:
    write_mnist(tmp_path, "train")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=tmp_path, split="test")


def test_resize_and_num_samples(tmp_path: Path) -> None:
    write_mnist(tmp_path, count=12)
    dataset = load_dataset("mnist", data_dir=tmp_path, input_shape=(3, 32, 32), num_samples=5)
    assert dataset.inputs.shape == (5, 3, 32, 32)


# --- errors: each one line, naming the path and what was expected ------------------------


def _message(error: pytest.ExceptionInfo[DataError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_no_data_dir() -> None:
    with pytest.raises(DataError) as error:
        load_dataset("mnist")
    assert "--data-dir" in _message(error)


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=missing)
    message = _message(error)
    assert str(missing) in message and "--data-dir" in message


def test_missing_files_lists_the_names_looked_for(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=tmp_path)
    message = _message(error)
    assert str(tmp_path) in message
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz"):
        assert name in message


def test_lone_images_file_is_missing_its_labels(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path, split="test")


def test_wrong_magic_number(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    images = tmp_path / "t10k-images-idx3-ubyte"
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    images.write_bytes(labels.read_bytes())  # a labels file where images belong
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=tmp_path, split="test")
    message = _message(error)
    assert str(images) in message and "expected 2051" in message and "got 2049" in message


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_truncated_data(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    data = idx_bytes(rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8), IMAGES_MAGIC)
    path = tmp_path / ("images" + (".gz" if gz else ""))
    cut = data[:-100]
    path.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(DataError) as error:
        read_idx(path, expected_magic=IMAGES_MAGIC)
    message = _message(error)
    assert str(path) in message
    assert f"expected {len(data)} bytes for shape (3, 28, 28), got {len(cut)}" in message


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(LABELS_MAGIC.to_bytes(4, "big") + b"\x00\x00")
    with pytest.raises(DataError, match="8-byte header, got 6 bytes"):
        read_idx(path, expected_magic=LABELS_MAGIC)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="4-byte header, got 2 bytes"):
        read_idx(path, expected_magic=LABELS_MAGIC)


def test_cut_off_gzip_stream(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=tmp_path, split="test")
    assert str(path) in _message(error)


def test_not_gzip_at_all(tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"this is not gzip data")
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(path, expected_magic=IMAGES_MAGIC)


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8), LABELS_MAGIC) + b"\x00")
    with pytest.raises(DataError, match="expected 12 bytes for shape \\(4,\\), got 13"):
        read_idx(path, expected_magic=LABELS_MAGIC)


def test_images_labels_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path, count=12)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.zeros(11, dtype=np.uint8), LABELS_MAGIC))
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=tmp_path, split="test")
    message = _message(error)
    assert "12 images" in message and "11 labels" in message


def test_label_out_of_range(tmp_path: Path) -> None:
    write_mnist(tmp_path, count=3)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.array([1, 12, 3], dtype=np.uint8), LABELS_MAGIC))
    with pytest.raises(DataError, match="bad label 12"):
        load_dataset("mnist", data_dir=tmp_path, split="test")


def test_dataset_length_reads_the_header_not_the_data(mnist_dir: Path) -> None:
    from parnn.data.registry import dataset_length, load_dataset

    assert dataset_length("mnist", data_dir=mnist_dir) == len(
        load_dataset("mnist", data_dir=mnist_dir)
    )
    assert dataset_length("mnist", data_dir=mnist_dir, num_samples=123) == 123
    assert dataset_length("digits") == len(load_dataset("digits"))
    assert dataset_length("synthetic", num_samples=77) == 77
    assert dataset_length("mnist", data_dir=mnist_dir / "nowhere") is None  # loading says why
