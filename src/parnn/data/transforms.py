"""Shape checks and the one image transform parnn applies: a resize to the model's input.

Images are normalised by their loaders; here they only change size (bilinear) and channel
count (grey repeated to C channels, or RGB averaged to grey).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from parnn.errors import DataError

__all__ = ["MAX_DATASET_BYTES", "check_input_shape", "resize_images"]

MAX_DATASET_BYTES = 8 * 1024**3
"""Largest float32 tensor (bytes) a resize may produce; beyond it, ask for fewer samples."""


def check_input_shape(input_shape: Sequence[int] | None, *, dataset: str) -> tuple[int, ...] | None:
    """``input_shape`` as a (C, H, W) tuple of positive ints, or None; else a DataError."""
    if input_shape is None:
        return None
    try:
        shape = tuple(int(size) for size in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or any(size <= 0 for size in shape):
        raise DataError(
            f"bad input_shape {input_shape!r} for dataset {dataset!r}: expected 3 positive "
            f"sizes C x H x W, e.g. (1, 28, 28) or --input 3x32x32"
        )
    return shape


def resize_images(
    images: torch.Tensor, input_shape: Sequence[int], *, dataset: str
) -> torch.Tensor:
    """Resize ``images`` (N, C, H, W) to (N, *input_shape).

    Height and width change with bilinear interpolation (antialiased when shrinking);
    1 channel is repeated to any C, and 3 channels are averaged when 1 is asked for.
    """
    channels, height, width = (int(size) for size in input_shape)
    count, source_channels, source_height, source_width = images.shape
    if source_channels != channels and source_channels != 1 and channels != 1:
        raise DataError(
            f"bad input_shape {tuple(input_shape)} for dataset {dataset!r}: its images have "
            f"{source_channels} channels, which convert only to 1 or {source_channels}"
        )
    nbytes = count * channels * height * width * 4
    if nbytes > MAX_DATASET_BYTES:
        raise DataError(
            f"dataset {dataset!r} resized to {channels}x{height}x{width} would take "
            f"{nbytes / 1024**3:.1f} GiB for {count} samples (limit "
            f"{MAX_DATASET_BYTES / 1024**3:.0f} GiB); use a smaller input shape or num_samples"
        )
    if (source_height, source_width) != (height, width):
        shrinking = height < source_height or width < source_width
        images = F.interpolate(
            images, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking
        )
    if source_channels != channels:
        if channels == 1:
            images = images.mean(dim=1, keepdim=True)  # (N, 1, H, W)
        else:
            images = images.repeat(1, channels, 1, 1)  # (N, C, H, W)
    return images.contiguous()
