"""A ``torch.distributed`` process group whose sends and receives between ranks of one host
go through shared memory (:mod:`parnn.transport.ring`), and everything else through gloo.

It plugs in through torch's own extension point: :func:`register_shm_backend` calls
``torch.distributed.Backend.register_backend`` with a creator that returns a
:class:`ShmProcessGroup` (a ``ProcessGroup`` written in Python), and
``dist.new_group(backend="parnn_shm")`` builds one on every rank. Code above it —
``PipelineStage``, torch's schedules, ``dist.send``/``isend``/``batch_isend_irecv`` —
uses it unchanged through the ``group`` it is given.

Set-up (collective, through the group's store): every rank publishes its host; the lowest
rank of each host creates the host's segment, the others map it, and once all have
mapped it the creator unlinks the file, so that nothing is left in ``/dev/shm`` however
the run ends afterwards. Pairs of ranks on different hosts, and every collective, go to
a gloo group built beside it on the same store.

Progress without threads: ``isend``/``irecv`` move what the ring allows at once and
return a :class:`ShmWork`; every call into the group (a new send or receive, a ``wait``,
an ``is_completed``) moves every pending message of this rank as far as it can, in the
order posted per peer. ``wait`` spins briefly, then yields the core (``os.sched_yield``),
then sleeps on the rank's doorbell (a futex in the segment that a peer rings when it
wrote to or read from this rank's rings); it checks that the peer's process is alive and
gives up after the group's timeout, naming the peer. No thread hand-off sits on the
message path: that hand-off (waking gloo's worker threads) is what costs gloo ~2 ms a
message here.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch.futures import Future

from parnn.errors import ConfigError
from parnn.transport import TRANSPORTS, ring
from parnn.transport.ring import RingSegment, Transfer

__all__ = [
    "BACKEND_NAME",
    "TRANSPORTS",
    "ShmProcessGroup",
    "ShmSettings",
    "ShmWork",
    "TransportError",
    "new_transport_group",
    "register_shm_backend",
    "transport_backend",
]

BACKEND_NAME = "parnn_shm"


class TransportError(RuntimeError):
    """A peer died, timed out or broke the order of messages (a failure of the run, not a
    user error: the launcher reports it with the rank that raised it)."""


@dataclass(kw_only=True, slots=True)
class ShmSettings:
    """Geometry of the rings and the wait policy of one shm process group."""

    slot_bytes: int = 1 << 20
    """Payload bytes of one slot; a larger message travels in several chunks."""
    num_slots: int = 8
    """Slots per ring (per ordered pair of ranks): messages a sender may run ahead."""
    require_same_host: bool = True
    """True (``--transport shm``): every pair must share a host; False (``auto``): pairs
    on different hosts (or a machine without x86-64 memory order) go through gloo."""
    spin_s: float = 50e-6
    """Seconds a wait polls flat out before it starts yielding the core."""
    yield_s: float = 300e-6
    """Seconds (from the wait's start) it polls with ``os.sched_yield`` between tries;
    then it sleeps until a peer rings its doorbell."""
    check_s: float = 0.05
    """Longest sleep between two checks that the peer is alive and the timeout not past."""
    timeout_s: float | None = None
    """Give up a wait after this long; None: the group's timeout."""

    def __post_init__(self) -> None:
        if self.slot_bytes < 64 or self.slot_bytes % 64:
            raise ConfigError(f"slot_bytes must be a multiple of 64 >= 64, got {self.slot_bytes}")
        if self.num_slots < 1:
            raise ConfigError(f"num_slots must be >= 1, got {self.num_slots}")
        for name in ("spin_s", "yield_s", "check_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0 seconds, got {getattr(self, name)}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {self.timeout_s}")


def _host_key() -> str:
    """Ranks with the same key share ``/dev/shm``: same host name, same boot."""
    boot = ""
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id") as file:
            boot = file.read().strip()
    return f"{socket.gethostname()}/{boot}/{int(ring.supported())}"


class ShmWork(dist.Work):
    """The ``Work`` of one send or receive: ``wait`` drives the group's progress until the
    message has moved, then completes the future (``get_future``) with the tensors."""

    def __init__(self, group: ShmProcessGroup, transfer: Transfer, tensors: list[torch.Tensor]):
        super().__init__()
        self._group = group
        self._transfer = transfer
        self._tensors = tensors
        self._future: Future[list[torch.Tensor]] = Future()
        if transfer.done:
            self._complete()

    def _complete(self) -> None:
        if not self._future.done():
            ring.finish_receive(self._transfer)
            self._future.set_result(self._tensors)

    def is_completed(self) -> bool:
        if not self._transfer.done:
            self._group.progress()
        if self._transfer.done:
            self._complete()
        return self._transfer.done

    def wait(self, timeout: datetime.timedelta | None = None) -> bool:
        if not self._transfer.done:
            self._group.wait_for(self._transfer)
        self._complete()
        return True

    def get_future(self) -> Future[list[torch.Tensor]]:
        return self._future


class ShmProcessGroup(dist.ProcessGroup):
    """Point-to-point over shared memory between the ranks of one host; gloo for the rest.

    Built by ``dist.new_group(backend="parnn_shm")`` after :func:`register_shm_backend`.
    """

    def __init__(
        self,
        store: dist.Store,
        rank: int,
        size: int,
        timeout: datetime.timedelta,
        *,
        settings: ShmSettings,
    ) -> None:
        super().__init__(rank, size)  # type: ignore[call-arg]  # (rank, size): stubs lag
        self._rank = rank
        self._size = size
        self.settings = settings
        self._timeout_s = settings.timeout_s or timeout.total_seconds()
        # gloo first: it carries collectives and cross-host pairs, and its set-up is a
        # rendezvous of every rank (which the shm set-up below then does not need to be).
        self._gloo: Any = dist.ProcessGroupGloo(
            dist.PrefixStore("gloo/", store), rank, size, timeout
        )
        store.set(f"host/{rank}", _host_key())
        hosts = [store.get(f"host/{r}").decode() for r in range(size)]
        local = [r for r in range(size) if hosts[r] == hosts[rank] and hosts[r].endswith("/1")]
        if settings.require_same_host and len(local) != size:
            others = sorted({h.split("/")[0] for h in hosts})
            raise ConfigError(
                f"--transport shm needs every rank on one x86-64 host, but the ranks run on "
                f"{', '.join(others)} ({_platform_note()}); use --transport auto (shm within a "
                "host, gloo across) or --transport gloo"
            )
        self.shm_peers = frozenset(r for r in local if r != rank)
        self._segment: RingSegment | None = None
        if self.shm_peers:
            self._segment = self._set_up_segment(store, local)
        self._sends: dict[int, deque[Transfer]] = {p: deque() for p in self.shm_peers}
        self._recvs: dict[int, deque[Transfer]] = {p: deque() for p in self.shm_peers}
        self._busy: set[int] = set()  # peers with pending sends or receives
        self.messages = {"shm": 0, "gloo": 0}  # sends and receives posted, per path
        self._group_name = ""  # set by torch (``_set_group_name``) once the group is built

    def _set_up_segment(self, store: dist.Store, local: list[int]) -> RingSegment:
        leader = local[0]
        if self._rank == leader:
            segment = RingSegment.create(
                rank=self._rank,
                ranks=local,
                group_size=self._size,
                num_slots=self.settings.num_slots,
                slot_bytes=self.settings.slot_bytes,
            )
            try:
                store.set(f"segment/{leader}", segment.path)
                # Unlink once every rank of the host has it mapped (or on any failure).
                store.wait([f"attached/{r}" for r in local if r != leader])
            finally:
                segment.unlink()
            return segment
        path = store.get(f"segment/{leader}").decode()
        try:
            segment = RingSegment.attach(path, rank=self._rank, ranks=local, group_size=self._size)
        except FileNotFoundError as exc:
            raise ConfigError(
                f"rank {self._rank} cannot open {path}, the shared-memory segment of rank "
                f"{leader} on the same host name: the ranks do not share /dev/shm (separate "
                "containers?); use --transport gloo"
            ) from exc
        store.set(f"attached/{self._rank}", "1")
        return segment

    # --- the torch.distributed.ProcessGroup interface ----------------------------------------

    def getBackendName(self) -> str:  # noqa: N802 - torch's name
        return BACKEND_NAME

    # A Python process group has no C++ backend to hold its name, and torch's own
    # ``group_name`` then fails; ``DeviceMesh`` needs it to find its sub-groups again.
    def _set_group_name(self, name: str) -> None:
        self._group_name = name

    @property
    def group_name(self) -> str:  # type: ignore[override]
        return self._group_name

    def send(self, tensors: list[torch.Tensor], dstRank: int, tag: int) -> dist.Work:  # noqa: N803
        if dstRank not in self.shm_peers:
            self.messages["gloo"] += 1
            return self._gloo.send(tensors, dstRank, tag)
        (tensor,) = tensors
        transfer = ring.new_transfer(dstRank, tag, tensor, receive=False)
        self.messages["shm"] += 1
        self._sends[dstRank].append(transfer)
        self._busy.add(dstRank)
        self.progress()
        return ShmWork(self, transfer, tensors)

    def recv(self, tensors: list[torch.Tensor], srcRank: int, tag: int) -> dist.Work:  # noqa: N803
        if srcRank not in self.shm_peers:
            self.messages["gloo"] += 1
            return self._gloo.recv(tensors, srcRank, tag)
        (tensor,) = tensors
        transfer = ring.new_transfer(srcRank, tag, tensor, receive=True)
        self.messages["shm"] += 1
        self._recvs[srcRank].append(transfer)
        self._busy.add(srcRank)
        self.progress()
        return ShmWork(self, transfer, tensors)

    def recv_anysource(self, tensors: list[torch.Tensor], tag: int) -> dist.Work:
        raise TransportError("the shm transport does not receive from any source; name src")

    # Collectives: gloo's (the pipeline sends none over this group; other users may).
    def barrier(self, opts: Any) -> dist.Work:  # type: ignore[override]
        return self._gloo.barrier(opts)

    def broadcast(self, tensors: list[torch.Tensor], opts: Any) -> dist.Work:  # type: ignore[override]
        return self._gloo.broadcast(tensors, opts)

    def allreduce(self, tensors: list[torch.Tensor], opts: Any) -> dist.Work:  # type: ignore[override]
        return self._gloo.allreduce(tensors, opts)

    def allgather(  # type: ignore[override]
        self, outputs: list[list[torch.Tensor]], inputs: list[torch.Tensor], opts: Any
    ) -> dist.Work:
        return self._gloo.allgather(outputs, inputs, opts)

    def gather(  # type: ignore[override]
        self, outputs: list[list[torch.Tensor]], inputs: list[torch.Tensor], opts: Any
    ) -> dist.Work:
        return self._gloo.gather(outputs, inputs, opts)

    def scatter(  # type: ignore[override]
        self, outputs: list[torch.Tensor], inputs: list[list[torch.Tensor]], opts: Any
    ) -> dist.Work:
        return self._gloo.scatter(outputs, inputs, opts)

    # --- progress ------------------------------------------------------------------------------

    def progress(self) -> bool:
        """Move every pending message of this rank as far as the rings allow; True if any
        byte moved."""
        segment = self._segment
        if segment is None or not self._busy:
            return False
        moved = False
        for peer in list(self._busy):
            sends, recvs = self._sends[peer], self._recvs[peer]
            while sends:
                moved |= segment.send_rings[peer].try_send(sends[0])
                if not sends[0].done:
                    break
                sends.popleft()
            while recvs:
                moved |= segment.recv_rings[peer].try_recv(
                    recvs[0], f"from rank {peer} to rank {self._rank}"
                )
                if not recvs[0].done:
                    break
                recvs.popleft()
            if not sends and not recvs:
                self._busy.discard(peer)
        return moved

    def wait_for(self, transfer: Transfer) -> None:
        """Drive progress until ``transfer`` is done: spin, then yield, then sleep on the
        doorbell; raise :class:`TransportError` if the peer dies or the timeout passes."""
        settings = self.settings
        segment = self._segment
        assert segment is not None
        bell = segment.bell
        self.progress()
        if transfer.done:
            return
        start = time.perf_counter()
        spin_until = start + settings.spin_s
        yield_until = start + settings.yield_s
        deadline = start + self._timeout_s
        next_check = start + settings.check_s
        while True:
            seen = int(bell.value[0])  # before the look: a ring after it wakes the sleep
            self.progress()
            if transfer.done:
                return
            now = time.perf_counter()
            if now < spin_until:
                continue
            if now < yield_until:
                os.sched_yield()
            else:
                bell.sleep(seen, settings.check_s)
            if now >= next_check:
                self._check_peer(transfer, now - start)
                next_check = now + settings.check_s
                if now >= deadline:
                    raise TransportError(
                        f"rank {self._rank} waited {now - start:.1f} s for a message "
                        f"{'to' if self._is_send(transfer) else 'from'} rank {transfer.peer} "
                        f"({transfer.offset}/{transfer.total} bytes moved): timed out"
                    )

    def _is_send(self, transfer: Transfer) -> bool:
        return any(t is transfer for t in self._sends.get(transfer.peer, ()))

    def _check_peer(self, transfer: Transfer, waited_s: float) -> None:
        assert self._segment is not None
        pid = self._segment.pid_of(transfer.peer)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise TransportError(
                f"rank {transfer.peer} (pid {pid}) exited while rank {self._rank} waited "
                f"{waited_s:.2f} s for its message ({transfer.offset}/{transfer.total} bytes "
                "moved)"
            ) from None
        except PermissionError:
            pass  # alive, someone else's

    def transport_of(self, peer: int) -> str:
        """'shm' or 'gloo': the path messages to and from ``peer`` take."""
        return "shm" if peer in self.shm_peers else "gloo"

    def close(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None


def _platform_note() -> str:
    return "x86-64" if ring.supported() else "not x86-64: the rings need x86-64 memory order"


def _create(
    settings: ShmSettings,
    store: dist.Store,
    rank: int,
    size: int,
    timeout: datetime.timedelta,
) -> ShmProcessGroup:
    return ShmProcessGroup(store, rank, size, timeout, settings=settings)


def register_shm_backend(settings: ShmSettings | None = None) -> None:
    """Register (or re-register with new settings) the ``parnn_shm`` backend with
    ``torch.distributed`` in this process; groups created afterwards use ``settings``."""
    creator: Callable[..., ShmProcessGroup] = partial(_create, settings or ShmSettings())
    dist.Backend.register_backend(BACKEND_NAME, creator, devices=["cpu"])


def transport_backend(
    transport: str, *, slot_bytes: int = 1 << 20, num_slots: int = 8, timeout_s: float = 30.0
) -> str | None:
    """The backend name of ``transport`` for groups torch builds itself (a
    ``DeviceMesh`` dimension's sub-groups: ``backend_override={"pp": name}``), registered
    with these settings; None for 'gloo' (the default backend)."""
    if transport not in TRANSPORTS:
        raise ConfigError(f"transport {transport!r} is unknown: choose {', '.join(TRANSPORTS)}")
    if transport == "gloo":
        return None
    register_shm_backend(
        ShmSettings(
            slot_bytes=slot_bytes,
            num_slots=num_slots,
            require_same_host=transport == "shm",
            timeout_s=timeout_s,
        )
    )
    return BACKEND_NAME


def new_transport_group(
    transport: str,
    *,
    slot_bytes: int = 1 << 20,
    num_slots: int = 8,
    timeout_s: float = 30.0,
) -> ShmProcessGroup | None:
    """The group for point-to-point messages of ``transport`` ('shm', 'auto' or 'gloo'),
    over every rank of the default group (collective: every rank calls it). 'gloo' returns
    None: the default (gloo) group itself."""
    if transport not in TRANSPORTS:
        raise ConfigError(f"transport {transport!r} is unknown: choose {', '.join(TRANSPORTS)}")
    if transport == "gloo":
        return None
    register_shm_backend(
        ShmSettings(
            slot_bytes=slot_bytes, num_slots=num_slots, require_same_host=transport == "shm"
        )
    )
    group = dist.new_group(backend=BACKEND_NAME, timeout=datetime.timedelta(seconds=timeout_s))
    assert isinstance(group, ShmProcessGroup), type(group)
    return group
