"""Transports for point-to-point messages between ranks: shared memory between ranks of
one host (:class:`ShmProcessGroup`, a ``torch.distributed`` process group), gloo for the
rest. Importing this package is cheap; the group itself imports torch."""

from __future__ import annotations

from typing import Any

__all__ = ["TRANSPORTS", "new_transport_group", "transport_geometry"]

TRANSPORTS = ("shm", "gloo", "auto")


def new_transport_group(transport: str, **kwargs: Any) -> Any:
    """See :func:`parnn.transport.group.new_transport_group`."""
    from parnn.transport.group import new_transport_group as create

    return create(transport, **kwargs)


def transport_geometry(shapes: list[tuple[int, ...]], *, itemsize: int = 4) -> dict[str, int]:
    """Ring geometry for a pipeline whose messages have ``shapes`` (float32 by default):
    a slot holds the largest message whole, and a ring up to 8 of them (at least 2, at
    most ~256 MiB a ring)."""
    import math

    largest = max((math.prod(shape) * itemsize for shape in shapes), default=4096)
    slot_bytes = max(4096, -(-largest // 4096) * 4096)
    num_slots = max(2, min(8, (256 << 20) // slot_bytes))
    return {"slot_bytes": slot_bytes, "num_slots": num_slots}
