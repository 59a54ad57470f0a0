"""``mnist``: the standard IDX files, raw or gzip-compressed, parsed with numpy.

Accepted layouts under ``data_dir`` (the first that holds the files wins):

- ``data_dir/train-images-idx3-ubyte[.gz]`` and friends (the MNIST distribution),
- ``data_dir/MNIST/raw/...`` (torchvision's layout, ``data_dir`` being its ``root``),
- ``data_dir/raw/...`` (``data_dir`` being torchvision's ``MNIST`` folder),

with ``.idx3-ubyte`` also accepted for ``-idx3-ubyte`` (some unpackers write that).

An IDX file is a 4-byte big-endian magic number ``0x0000TTDD`` (TT = 0x08 for unsigned
bytes, DD = the number of dimensions: 2051 for images, 2049 for labels), DD big-endian
uint32 sizes, and then the data, row-major.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import numpy as np
import torch

from parnn.errors import DataError

__all__ = [
    "IMAGES_MAGIC",
    "mnist_length",
    "LABELS_MAGIC",
    "MNIST_MEAN",
    "MNIST_NUM_CLASSES",
    "MNIST_STD",
    "find_mnist_files",
    "load_mnist_arrays",
    "read_idx",
]

logger = logging.getLogger(__name__)

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (N,)
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
MNIST_NUM_CLASSES = 10

_PREFIXES = {"train": "train", "test": "t10k"}
_SUBDIRS = (Path("."), Path("MNIST") / "raw", Path("raw"))


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        # gzip.BadGzipFile is an OSError; a cut-off .gz ends in EOFError
        raise DataError(f"cannot read IDX file {path}: {error}") from None


def read_idx(path: Path, *, expected_magic: int) -> np.ndarray:
    """The array an IDX file holds (uint8, shape from its header); one-line DataErrors."""
    data = _read_bytes(path)
    kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
    if len(data) < 4:
        raise DataError(
            f"truncated IDX file {path}: expected at least a 4-byte header, got {len(data)} bytes"
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"wrong magic number in {path}: expected {expected_magic} (MNIST {kind}), "
            f"got {magic}; is this an IDX {kind} file?"
        )
    num_dims = magic & 0xFF
    header_bytes = 4 + 4 * num_dims
    if len(data) < header_bytes:
        raise DataError(
            f"truncated IDX file {path}: expected a {header_bytes}-byte header, "
            f"got {len(data)} bytes"
        )
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=num_dims, offset=4))
    expected_bytes = header_bytes + int(np.prod(shape))
    if len(data) != expected_bytes:
        problem = "truncated IDX file" if len(data) < expected_bytes else "oversized IDX file"
        raise DataError(
            f"{problem} {path}: expected {expected_bytes} bytes for shape {shape}, got {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(shape)


def _candidates(directory: Path, prefix: str, kind: str, idx: str) -> list[Path]:
    names = (f"{prefix}-{kind}-{idx}-ubyte", f"{prefix}-{kind}.{idx}-ubyte")
    return [
        directory / subdir / (name + suffix)
        for subdir in _SUBDIRS
        for name in names
        for suffix in ("", ".gz")
    ]


def _find_pair(directory: Path, prefix: str) -> tuple[Path, Path] | None:
    """The (images, labels) files for ``prefix`` in the first layout holding both."""
    images = [p for p in _candidates(directory, prefix, "images", "idx3") if p.is_file()]
    labels = [p for p in _candidates(directory, prefix, "labels", "idx1") if p.is_file()]
    for image_path in images:
        for label_path in labels:
            if image_path.parent == label_path.parent:
                return image_path, label_path
    return None


def find_mnist_files(data_dir: Path | None, split: str) -> tuple[Path, Path, str]:
    """(images, labels, note) for ``split``; train falls back to t10k with a logged note."""
    expected = (
        f"{_PREFIXES[split]}-images-idx3-ubyte[.gz] and {_PREFIXES[split]}-labels-idx1-ubyte[.gz]"
    )
    if data_dir is None:
        raise DataError(
            f"dataset 'mnist' needs a directory holding {expected}: pass --data-dir DIR "
            f"(data_dir=...)"
        )
    directory = Path(data_dir).expanduser()
    if not directory.is_dir():
        raise DataError(
            f"mnist data directory {directory} does not exist or is not a directory; "
            f"pass --data-dir DIR holding {expected}"
        )
    pair = _find_pair(directory, _PREFIXES[split])
    if pair is not None:
        return pair[0], pair[1], f"{_PREFIXES[split]} files"
    if split == "train":
        fallback = _find_pair(directory, _PREFIXES["test"])
        if fallback is not None:
            logger.warning(
                "mnist: no train-*-ubyte files in %s; using the 10k test files (t10k-*) as the "
                "training set (split it with train_val_split for a held-out set)",
                directory,
            )
            return fallback[0], fallback[1], "t10k files (no train files found)"
    looked_for = ", ".join(
        sorted(
            {
                path.name
                for kind, idx in (("images", "idx3"), ("labels", "idx1"))
                for path in _candidates(directory, _PREFIXES[split], kind, idx)
            }
        )
    )
    layouts = ", ".join(str(directory / subdir) for subdir in _SUBDIRS)
    raise DataError(
        f"mnist {split} files not found in {layouts}: looked for {looked_for}"
        + (" (and the t10k-* test files as a fallback)" if split == "train" else "")
    )


def mnist_length(data_dir: Path | None, split: str) -> int | None:
    """How many samples ``load_mnist_arrays`` would return (the labels file's header, not
    the data), or None where the files are missing or unreadable (loading says why)."""
    if data_dir is None or not Path(data_dir).expanduser().is_dir():
        return None
    directory = Path(data_dir).expanduser()
    pair = _find_pair(directory, _PREFIXES[split])
    if pair is None and split == "train":
        pair = _find_pair(directory, _PREFIXES["test"])
    if pair is None:
        return None
    labels_path = pair[1]
    try:
        opener = gzip.open if labels_path.suffix == ".gz" else open
        with opener(labels_path, "rb") as stream:
            header = stream.read(8)
    except (OSError, EOFError, zlib.error):
        return None
    if len(header) < 8 or int.from_bytes(header[:4], "big") != LABELS_MAGIC:
        return None
    return int.from_bytes(header[4:8], "big")


def load_mnist_arrays(data_dir: Path | None, split: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Images (N, 1, 28, 28) float32 normalised with MNIST mean/std, labels (N,), source."""
    images_path, labels_path, note = find_mnist_files(data_dir, split)
    images = read_idx(images_path, expected_magic=IMAGES_MAGIC)  # (N, 28, 28) uint8
    labels = read_idx(labels_path, expected_magic=LABELS_MAGIC)  # (N,) uint8
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"mnist images/labels count mismatch: {images_path} holds {images.shape[0]} images "
            f"but {labels_path} holds {labels.shape[0]} labels; expected equal counts"
        )
    if labels.size and int(labels.max()) >= MNIST_NUM_CLASSES:
        raise DataError(f"bad label {int(labels.max())} in {labels_path}: expected digits 0..9")
    inputs = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)  # (N, 1, H, W)
    inputs = (inputs / 255.0 - MNIST_MEAN) / MNIST_STD
    targets = torch.from_numpy(labels.astype(np.int64))
    return inputs, targets, f"mnist {split}: {note} in {images_path.parent}"
