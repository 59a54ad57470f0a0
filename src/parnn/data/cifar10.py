"""``cifar10``: the standard "python version" batches (``cifar-10-batches-py``).

Looks in ``data_dir`` and ``data_dir/cifar-10-batches-py`` for ``data_batch_1`` ..
``data_batch_5`` (split ``train``) or ``test_batch`` (split ``test``). Each batch is a
pickled dict with ``b'data'`` (N x 3072 uint8: 1024 red, 1024 green, 1024 blue values of a
32x32 image, row-major) and ``b'labels'`` (N ints 0..9).

The pickles are read with an unpickler that only builds numpy arrays, lists and dicts, so
a file from elsewhere cannot run code.
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parnn.errors import DataError

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_NUM_CLASSES",
    "CIFAR10_STD",
    "find_cifar10_files",
    "load_cifar10_arrays",
    "read_cifar10_batch",
]

logger = logging.getLogger(__name__)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_NUM_CLASSES = 10
_PIXELS = 3 * 32 * 32
_TRAIN_NAMES = tuple(f"data_batch_{index}" for index in range(1, 6))
_TEST_NAMES = ("test_batch",)
_SUBDIRS = (Path("."), Path("cifar-10-batches-py"))
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # arrays pickled at protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2 (as numpy arrays are)
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one batch file."""
    try:
        payload = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise DataError(
            f"cannot read CIFAR-10 batch {path}: expected a pickled dict of numpy arrays "
            f"(the python version of CIFAR-10); {type(error).__name__}: {error}"
        ) from None
    if not isinstance(payload, dict):
        raise DataError(
            f"bad CIFAR-10 batch {path}: expected a pickled dict with b'data' and b'labels', "
            f"got {type(payload).__name__}"
        )
    data = payload.get(b"data", payload.get("data"))
    labels = payload.get(b"labels", payload.get("labels"))
    if data is None or labels is None:
        keys = ", ".join(repr(key) for key in payload)
        raise DataError(
            f"bad CIFAR-10 batch {path}: expected keys b'data' and b'labels', got {keys}"
        )
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DataError(
            f"bad CIFAR-10 batch {path}: expected b'data' of shape (N, {_PIXELS}) uint8, "
            f"got {data.shape} {data.dtype}"
        )
    label_array = np.asarray(labels, dtype=np.int64).reshape(-1)
    if label_array.shape[0] != data.shape[0]:
        raise DataError(
            f"CIFAR-10 images/labels count mismatch in {path}: {data.shape[0]} images but "
            f"{label_array.shape[0]} labels; expected equal counts"
        )
    if label_array.size and (label_array.min() < 0 or label_array.max() >= CIFAR10_NUM_CLASSES):
        raise DataError(
            f"bad labels in CIFAR-10 batch {path}: expected 0..9, got "
            f"{int(label_array.min())}..{int(label_array.max())}"
        )
    return data.reshape(-1, 3, 32, 32), label_array


def find_cifar10_files(data_dir: Path | None, split: str) -> list[Path]:
    """The batch files of ``split``, in order; a missing directory or file is a DataError."""
    names = _TRAIN_NAMES if split == "train" else _TEST_NAMES
    expected = "data_batch_1..5" if split == "train" else "test_batch"
    if data_dir is None:
        raise DataError(
            f"dataset 'cifar10' needs a directory holding the python batches ({expected}): "
            f"pass --data-dir DIR (data_dir=...)"
        )
    directory = Path(data_dir).expanduser()
    if not directory.is_dir():
        raise DataError(
            f"cifar10 data directory {directory} does not exist or is not a directory; "
            f"pass --data-dir DIR holding {expected} (or cifar-10-batches-py/)"
        )
    for subdir in _SUBDIRS:
        found = [
            directory / subdir / name for name in names if (directory / subdir / name).is_file()
        ]
        if found:
            if len(found) < len(names):
                missing = sorted(set(names) - {path.name for path in found})
                logger.warning(
                    "cifar10: %s lacks %s; loading only %s",
                    directory / subdir,
                    ", ".join(missing),
                    ", ".join(path.name for path in found),
                )
            return found
    layouts = ", ".join(str(directory / subdir) for subdir in _SUBDIRS)
    raise DataError(f"cifar10 {split} files not found in {layouts}: looked for {', '.join(names)}")


def load_cifar10_arrays(
    data_dir: Path | None, split: str
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Images (N, 3, 32, 32) float32 normalised per channel, labels (N,) int64, source."""
    paths = find_cifar10_files(data_dir, split)
    batches = [read_cifar10_batch(path) for path in paths]
    images = np.concatenate([images for images, _ in batches])  # (N, 3, 32, 32) uint8
    labels = np.concatenate([labels for _, labels in batches])  # (N,)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    inputs = (torch.from_numpy(images.astype(np.float32)) / 255.0 - mean) / std
    names = ", ".join(path.name for path in paths)
    return inputs, torch.from_numpy(labels), f"cifar10 {split}: {names} in {paths[0].parent}"
