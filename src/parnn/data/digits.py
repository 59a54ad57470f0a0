"""``digits``: the 1,797 real 8x8 handwritten digits bundled with scikit-learn (10 classes).

The embedded default dataset: it needs no download and no directory. Pixels (0..16) are
scaled to 0..1 and then standardised with the mean and standard deviation of all 1,797
images, so a subset (``num_samples``) is normalised exactly like the whole.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["DIGITS_NUM_CLASSES", "DIGITS_NUM_SAMPLES", "load_digits_arrays"]

DIGITS_NUM_CLASSES = 10
DIGITS_NUM_SAMPLES = 1797


@functools.cache
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # (1797, 8, 8) in 0..1
    labels = np.asarray(bunch.target, dtype=np.int64)  # (1797,)
    images = (images - images.mean()) / images.std()
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits: images (1797, 1, 8, 8) float32, standardised; labels (1797,) int64."""
    images, labels = _raw_digits()
    inputs = torch.tensor(images).unsqueeze(1)  # (N, 1, 8, 8), a fresh copy
    return inputs, torch.tensor(labels)
