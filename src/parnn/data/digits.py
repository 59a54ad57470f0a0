"""``digits``: the 1,797 real 8x8 handwritten digits bundled with scikit-learn (10 classes).

The embedded default dataset: it needs no download and no directory. Pixels (0..16) are
scaled to 0..1 and then standardised with the mean and standard deviation of all 1,797
images, so a subset (``num_samples``) is normalised exactly like the whole.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

__all__ = ["DIGITS_NUM_CLASSES", "DIGITS_NUM_SAMPLES", "load_digits_arrays", "read_digits_file"]

DIGITS_NUM_CLASSES = 10
DIGITS_NUM_SAMPLES = 1797


def read_digits_file() -> tuple[np.ndarray, np.ndarray] | None:
    """The digits as scikit-learn ships them (``sklearn/datasets/data/digits.csv.gz``: one
    row of 64 pixels 0..16 and a label per image), read without importing scikit-learn
    (~0.6 s, most of a short run's start-up); None where the file is not there."""
    spec = importlib.util.find_spec("sklearn")  # finds the package, imports nothing
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    try:
        with gzip.open(path, "rt") as stream:
            table = np.loadtxt(stream, delimiter=",", dtype=np.float64)
    except (OSError, ValueError, EOFError):
        return None
    if table.shape != (DIGITS_NUM_SAMPLES, 65):
        return None
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


@functools.cache
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    found = read_digits_file()
    if found is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        found = np.asarray(bunch.images), np.asarray(bunch.target)
    images = np.asarray(found[0], dtype=np.float32) / 16.0  # (1797, 8, 8) in 0..1
    labels = np.asarray(found[1], dtype=np.int64)  # (1797,)
    images = (images - images.mean()) / images.std()
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits: images (1797, 1, 8, 8) float32, standardised; labels (1797,) int64."""
    images, labels = _raw_digits()
    inputs = torch.tensor(images).unsqueeze(1)  # (N, 1, 8, 8), a fresh copy
    return inputs, torch.tensor(labels)
