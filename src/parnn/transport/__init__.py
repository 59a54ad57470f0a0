"""Transports for point-to-point messages between ranks: shared memory between ranks of
one host (:class:`ShmProcessGroup`, a ``torch.distributed`` process group), gloo for the
rest. Importing this package is cheap; the group itself imports torch."""

from __future__ import annotations

from typing import Any

__all__ = ["TRANSPORTS", "new_transport_group"]

TRANSPORTS = ("shm", "gloo", "auto")


def new_transport_group(transport: str, **kwargs: Any) -> Any:
    """See :func:`parnn.transport.group.new_transport_group`."""
    from parnn.transport.group import new_transport_group as create

    return create(transport, **kwargs)
