"""``load_dataset``: one entry point from a dataset name (``--data``) to an ArrayDataset."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from parnn.data.cifar10 import CIFAR10_NUM_CLASSES, load_cifar10_arrays
from parnn.data.dataset import ArrayDataset
from parnn.data.digits import DIGITS_NUM_CLASSES, DIGITS_NUM_SAMPLES, load_digits_arrays
from parnn.data.mnist import MNIST_NUM_CLASSES, load_mnist_arrays, mnist_length
from parnn.data.synthetic import (
    SYNTHETIC_INPUT_SHAPE,
    SYNTHETIC_NUM_CLASSES,
    SYNTHETIC_NUM_SAMPLES,
    make_synthetic_arrays,
)
from parnn.data.transforms import check_input_shape, resize_images
from parnn.errors import DataError

__all__ = ["DATASETS", "SPLITS", "dataset_length", "dataset_names", "load_dataset"]

logger = logging.getLogger(__name__)

DATASETS: dict[str, str] = {
    "digits": "1,797 real 8x8 handwritten digits bundled with scikit-learn (10 classes)",
    "mnist": "MNIST from IDX files in --data-dir (28x28 digits, 10 classes)",
    "cifar10": "CIFAR-10 from the python batches in --data-dir (3x32x32, 10 classes)",
    "synthetic": "random class-prototype images of any shape, deterministic by seed",
}
"""Dataset name -> one-line description, in the order ``parnn`` lists them."""

SPLITS = ("train", "test")
_FILE_DATASETS = ("mnist", "cifar10")
_TRUE_NUM_CLASSES = {
    "digits": DIGITS_NUM_CLASSES,
    "mnist": MNIST_NUM_CLASSES,
    "cifar10": CIFAR10_NUM_CLASSES,
}


def dataset_names() -> tuple[str, ...]:
    """The names ``load_dataset`` accepts."""
    return tuple(DATASETS)


def dataset_length(
    name: str,
    *,
    data_dir: str | Path | None = None,
    num_samples: int | None = None,
    split: str = "train",
) -> int | None:
    """How many samples ``load_dataset`` would return, found without loading the data (a
    file header at most), so that a parent process can check a batch size before it starts
    the ranks that load it; None where that is not known cheaply (cifar10, missing files)."""
    key = str(name).strip().lower()
    length: int | None
    if key == "digits":
        length = DIGITS_NUM_SAMPLES
    elif key == "synthetic":
        length = SYNTHETIC_NUM_SAMPLES if num_samples is None else num_samples
    elif key == "mnist":
        length = mnist_length(None if data_dir is None else Path(data_dir), split)
    else:
        length = None
    if length is not None and num_samples is not None:
        length = min(length, num_samples)
    return length


def _load_synthetic(
    shape: tuple[int, ...] | None,
    num_classes: int | None,
    num_samples: int | None,
    seed: int,
    split: str,
) -> ArrayDataset:
    classes = SYNTHETIC_NUM_CLASSES if num_classes is None else num_classes
    if classes < 2:
        raise DataError(f"synthetic data needs num_classes >= 2, got {classes}")
    samples = SYNTHETIC_NUM_SAMPLES if num_samples is None else num_samples
    input_shape = SYNTHETIC_INPUT_SHAPE if shape is None else shape
    inputs, targets = make_synthetic_arrays(
        input_shape=input_shape, num_classes=classes, num_samples=samples, seed=seed, split=split
    )
    source = f"synthetic {split}: seed {seed}, {samples} samples, {classes} classes"
    return ArrayDataset(inputs, targets, num_classes=classes, name="synthetic", source=source)


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    split: str = "train",
) -> ArrayDataset:
    """Load dataset ``name`` into memory.

    ``data_dir``: the directory of the files (mnist, cifar10). ``input_shape`` (C, H, W):
    the shape to generate (synthetic) or to resize to (bilinear; grey repeated to C
    channels). ``num_classes``: the class count (synthetic); for real datasets it must be
    None or their true count. ``num_samples``: keep the first N samples (synthetic: how
    many to draw). ``seed``: synthetic's generator seed (real data is fixed). ``split``:
    ``'train'`` or ``'test'`` (mnist's train falls back to its t10k files when that is all
    there is; digits has no test split: use ``train_val_split``).
    """
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)} (--data NAME)"
        )
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for dataset {key!r}: choose train or test")
    if seed < 0:
        raise DataError(f"seed must be >= 0, got {seed}")
    if num_samples is not None and num_samples < 1:
        raise DataError(f"num_samples must be >= 1 (or unset for all), got {num_samples}")
    shape = check_input_shape(input_shape, dataset=key)
    if data_dir is not None and key not in _FILE_DATASETS:
        logger.warning("data_dir %s is ignored: dataset %r needs no files", data_dir, key)

    if key == "synthetic":
        return _load_synthetic(shape, num_classes, num_samples, seed, split)

    true_classes = _TRUE_NUM_CLASSES[key]
    if num_classes is not None and num_classes != true_classes:
        raise DataError(
            f"dataset {key!r} has {true_classes} classes, got num_classes={num_classes}; "
            f"leave it unset (only synthetic data takes a class count)"
        )
    directory = None if data_dir is None else Path(data_dir)
    inputs: torch.Tensor
    if key == "digits":
        if split == "test":
            raise DataError(
                "dataset 'digits' has no test split (1,797 images in all): load split='train' "
                "and hold out part of it with train_val_split"
            )
        inputs, targets = load_digits_arrays()
        source = "digits: scikit-learn's bundled 8x8 digits"
    elif key == "mnist":
        inputs, targets, source = load_mnist_arrays(directory, split)
    else:
        inputs, targets, source = load_cifar10_arrays(directory, split)

    if num_samples is not None:
        if num_samples > inputs.shape[0]:
            raise DataError(
                f"num_samples={num_samples} exceeds the {inputs.shape[0]} samples of {key!r} "
                f"({source}); use at most {inputs.shape[0]} or leave it unset"
            )
        inputs, targets = inputs[:num_samples], targets[:num_samples]
    if shape is not None:
        inputs = resize_images(inputs, shape, dataset=key)
    return ArrayDataset(inputs, targets, num_classes=true_classes, name=key, source=source)
