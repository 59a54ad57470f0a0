"""The communication model: what it costs to move a tensor from one pipeline stage to the next.

A transfer of ``n`` bytes costs ``latency_s + n / bandwidth_bytes_per_s`` (the classic
alpha-beta model). Both numbers are fitted by least squares to one-way times measured
between two pinned processes over the backend in use (gloo on CPU): a ping-pong per size,
half the median round trip, over the transport the pipeline uses (``gloo``, or ``shm``:
shared memory between ranks of one host, :mod:`parnn.transport`). The fit weighs each size by ``1 / time`` so that the small
sizes, which decide the latency, count as much as the large ones, which decide the
bandwidth. The measurement itself is :func:`parnn.partition.measure.comm.measure_comm_model`.

    >>> model = fit_comm_model([1_000, 1_000_000], [101e-6, 1100e-6], backend="gloo")
    >>> round(model.latency_s * 1e6), round(model.bandwidth_bytes_per_s / 1e9, 3)
    (100, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from parnn.errors import ConfigError

__all__ = [
    "DEFAULT_SIZES_BYTES",
    "CommModel",
    "fit_comm_model",
]

# 1 KiB .. 32 MiB, every power of 4: covers a LeNet boundary (a few KiB per micro-batch)
# up to a VGG16 conv boundary at 64x64 (tens of MiB per batch).
DEFAULT_SIZES_BYTES: tuple[int, ...] = tuple(4**e * 1024 for e in range(0, 8))


@dataclass(frozen=True, slots=True)
class CommModel:
    """``time(bytes) = latency_s + bytes / bandwidth_bytes_per_s`` for one transfer."""

    latency_s: float
    """Fixed cost of one transfer, seconds."""
    bandwidth_bytes_per_s: float
    """Bytes per second once a transfer is under way."""
    backend: str = "gloo"
    """The torch.distributed backend the times were measured on."""
    transport: str = "gloo"
    """The path of the messages: 'gloo' (the backend's own) or 'shm' (shared memory)."""
    sizes_bytes: tuple[int, ...] = ()
    """The message sizes measured (empty for a model written by hand)."""
    times_s: tuple[float, ...] = ()
    """The median one-way time measured for each size, seconds."""

    def __post_init__(self) -> None:
        if not self.latency_s >= 0.0:
            raise ConfigError(f"comm latency_s must be >= 0 seconds, got {self.latency_s}")
        if not self.bandwidth_bytes_per_s > 0.0:
            raise ConfigError(
                f"comm bandwidth_bytes_per_s must be > 0, got {self.bandwidth_bytes_per_s}"
            )
        if len(self.sizes_bytes) != len(self.times_s):
            raise ConfigError(
                f"comm model has {len(self.sizes_bytes)} sizes but {len(self.times_s)} times"
            )

    def time_s(self, num_bytes: float) -> float:
        """Seconds to move ``num_bytes`` from one process to another; 0 for nothing."""
        if num_bytes <= 0:
            return 0.0
        return self.latency_s + float(num_bytes) / self.bandwidth_bytes_per_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "transport": self.transport,
            "latency_s": self.latency_s,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "sizes_bytes": list(self.sizes_bytes),
            "times_s": list(self.times_s),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> CommModel:
        return cls(
            latency_s=float(payload["latency_s"]),
            bandwidth_bytes_per_s=float(payload["bandwidth_bytes_per_s"]),
            backend=str(payload.get("backend", "gloo")),
            transport=str(payload.get("transport", "gloo")),
            sizes_bytes=tuple(int(s) for s in payload.get("sizes_bytes", ())),
            times_s=tuple(float(t) for t in payload.get("times_s", ())),
        )


def fit_comm_model(
    sizes_bytes: Sequence[int],
    times_s: Sequence[float],
    *,
    backend: str = "gloo",
    transport: str = "gloo",
) -> CommModel:
    """Fit ``latency + bytes / bandwidth`` to measured one-way times (relative least squares).

    Needs at least two distinct sizes. A negative fitted latency (noise on a fast link) is
    clipped to 0 and the bandwidth refitted through the origin.
    """
    sizes = np.asarray(sizes_bytes, dtype=np.float64)
    times = np.asarray(times_s, dtype=np.float64)
    if sizes.shape != times.shape or sizes.ndim != 1:
        raise ConfigError(f"need one time per size; got {sizes.size} sizes, {times.size} times")
    if np.unique(sizes).size < 2:
        raise ConfigError("fitting a comm model needs times for at least two distinct sizes")
    if np.any(times <= 0) or np.any(sizes <= 0):
        raise ConfigError("comm sizes and times must all be > 0")
    weights = 1.0 / times  # relative error: every size counts alike
    design = np.stack([np.ones_like(sizes), sizes], axis=1) * weights[:, None]
    (latency, seconds_per_byte), *_ = np.linalg.lstsq(design, times * weights, rcond=None)
    if latency < 0.0 or seconds_per_byte <= 0.0:
        latency = max(float(latency), 0.0)
        # Refit the slope with the latency held: minimise sum(w^2 (lat + s x - t)^2) over s.
        x, r = sizes * weights, (times - latency) * weights
        seconds_per_byte = max(float(x @ r / (x @ x)), 1e-15)
    return CommModel(
        latency_s=float(latency),
        bandwidth_bytes_per_s=1.0 / float(seconds_per_byte),
        backend=backend,
        transport=transport,
        sizes_bytes=tuple(int(s) for s in sizes_bytes),
        times_s=tuple(float(t) for t in times_s),
    )
