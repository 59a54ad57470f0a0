"""Transports for point-to-point messages between ranks: shared memory between ranks of
one host (:class:`~parnn.transport.group.ShmProcessGroup`, a ``torch.distributed``
process group), gloo for the rest. Importing this package is cheap (no torch); the group
itself imports torch when it is built."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from collections.abc import Sequence
from typing import Any

__all__ = [
    "SEGMENT_DIR",
    "SEGMENT_PREFIX",
    "TRANSPORTS",
    "local_transport",
    "new_transport_group",
    "remove_segments_of",
    "transport_backend",
    "transport_geometry",
]

TRANSPORTS = ("shm", "gloo", "auto")
SEGMENT_DIR = "/dev/shm"
SEGMENT_PREFIX = "parnn-shm-"  # then the creating process's pid, '-', a random suffix


def local_transport(transport: str) -> str:
    """The path messages between two ranks of this host take under ``transport``:
    'auto' is 'shm' on x86-64 (whose memory order the rings rely on), else 'gloo'."""
    if transport == "auto":
        return "shm" if platform.machine().lower() in ("x86_64", "amd64") else "gloo"
    return transport


def new_transport_group(transport: str, **kwargs: Any) -> Any:
    """See :func:`parnn.transport.group.new_transport_group`."""
    from parnn.transport.group import new_transport_group as create

    return create(transport, **kwargs)


def transport_backend(transport: str, **kwargs: Any) -> str | None:
    """See :func:`parnn.transport.group.transport_backend`."""
    from parnn.transport.group import transport_backend as register

    return register(transport, **kwargs)


def transport_geometry(shapes: Sequence[tuple[int, ...]], *, itemsize: int = 4) -> dict[str, int]:
    """Ring geometry for a pipeline whose messages have ``shapes`` (float32 by default):
    a slot holds the largest message whole, and a ring up to 8 of them (at least 2, at
    most ~256 MiB a ring)."""
    largest = max((math.prod(shape) * itemsize for shape in shapes), default=4096)
    slot_bytes = max(4096, -(-largest // 4096) * 4096)
    num_slots = max(2, min(8, (256 << 20) // slot_bytes))
    return {"slot_bytes": slot_bytes, "num_slots": num_slots}


def remove_segments_of(pid: int) -> list[str]:
    """Unlink the shared-memory segments process ``pid`` created and did not unlink itself
    (it died during the group's set-up); returns their paths. The launcher calls it for
    every rank it stopped."""
    removed = []
    prefix = f"{SEGMENT_PREFIX}{pid}-"
    with contextlib.suppress(OSError):
        for name in os.listdir(SEGMENT_DIR):
            if name.startswith(prefix):
                path = os.path.join(SEGMENT_DIR, name)
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed.append(path)
    return removed
