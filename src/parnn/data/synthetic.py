"""``synthetic``: random images of any shape and class count, deterministic by seed.

For the systems studies, where the shape of the tensors matters and the content does not,
but training must still make progress (a loss that falls tells a broken engine from a
working one). Each class ``c`` has a fixed random prototype image ``P_c`` drawn from the
seed; a sample of class ``c`` is ``SIGNAL * P_c + noise`` with unit Gaussian noise, so the
classes are learnable (linearly separable in expectation) yet every sample is different.

Streams are split by seed: the prototypes come from ``(seed, 0)``, the train samples from
``(seed, 1)`` and the test samples from ``(seed, 2)``, so ``split='test'`` draws fresh
samples of the same classes.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "SIGNAL",
    "SYNTHETIC_INPUT_SHAPE",
    "SYNTHETIC_NUM_CLASSES",
    "SYNTHETIC_NUM_SAMPLES",
    "make_synthetic_arrays",
]

SYNTHETIC_INPUT_SHAPE = (3, 32, 32)
SYNTHETIC_NUM_CLASSES = 10
SYNTHETIC_NUM_SAMPLES = 1024
SIGNAL = 0.5
"""Scale of the class prototype against unit noise, per pixel."""

_STREAMS = {"train": 1, "test": 2}


def make_synthetic_arrays(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    num_samples: int,
    seed: int,
    split: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (num_samples, *input_shape) float32 and balanced-in-expectation labels int64."""
    prototype_rng = np.random.default_rng([seed, 0])
    prototypes = prototype_rng.standard_normal((num_classes, *input_shape), dtype=np.float32)
    sample_rng = np.random.default_rng([seed, _STREAMS[split]])
    labels = sample_rng.integers(0, num_classes, size=num_samples, dtype=np.int64)  # (N,)
    images = sample_rng.standard_normal((num_samples, *input_shape), dtype=np.float32)
    images += SIGNAL * prototypes[labels]  # (N, C, H, W)
    return torch.from_numpy(images), torch.from_numpy(labels)
