"""Rings of slots in one shared-memory segment: the data path of the same-host transport.

One segment per host holds a ring for every ordered pair of ranks on that host. A message
of ``n`` bytes travels as ``ceil(n / slot_bytes)`` chunks (one chunk for an empty
message), chunk ``k`` of a ring in slot ``k % num_slots``::

    segment | header (magic, slot geometry, one pid per rank) | bells | ring 0->1 | ...
    ring    | read_count | slot 0 | slot 1 | ... | slot N-1 |
    slot    | stamp  tag  message_bytes  chunk_bytes  (64 bytes) | payload (slot_bytes) |

The sender of chunk ``k`` waits until ``k - read_count < N`` (its slot is free), copies
the payload in, writes the header and finally the stamp ``k + 1``. The receiver waits
until the slot's stamp is ``k + 1``, copies the payload straight into the receiving
tensor and then publishes ``read_count = k + 1``. Each counter has one writer, so no
lock is needed: the order of the stores is the order of the program on x86-64 (total
store order), the only architecture this transport switches on for.

Every rank has a doorbell: a 32-bit counter on its own cache line that a peer bumps, then
wakes with ``futex(FUTEX_WAKE)``, after it wrote a chunk for the rank or freed a slot of
the rank's. A rank with nothing left to do sleeps in ``futex(FUTEX_WAIT)`` on its bell
until then: the kernel wakes it directly, with no thread hand-off (the cost of gloo's
messages here), and a sleeping rank leaves its core to whoever needs it. The bump comes
before the wake's system call and the kernel re-reads the bell before it puts a waiter to
sleep, so no wake-up is lost.

Nothing here blocks except :meth:`RingSegment.sleep`: ``try_send``/``try_recv`` move as
many chunks as the ring allows and return; waiting is the process group's business
(:mod:`parnn.transport.group`).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import platform
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from parnn.transport import SEGMENT_DIR, SEGMENT_PREFIX

__all__ = ["RingSegment", "Transfer", "finish_receive", "new_transfer", "supported"]

_MAGIC = 0x7061726E6E73686D  # "parnnshm"
_HEADER_BYTES = 4096  # magic, geometry, then one pid per rank (int64 each)
_SLOT_HEADER_BYTES = 64  # stamp, tag, message_bytes, chunk_bytes (+ padding to a cache line)
_RING_HEADER_BYTES = 128  # read_count alone on its cache lines
_BELL_BYTES = 64  # one doorbell (int32) per rank, each on its own cache line
_STAMP, _TAG, _MESSAGE_BYTES, _CHUNK_BYTES = 0, 1, 2, 3


_memmove = ctypes.memmove
_SYS_FUTEX = 202  # x86-64
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1  # shared between processes: not the _PRIVATE variants
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Bell:
    """A rank's doorbell: a 32-bit counter in the segment, rung by its peers."""

    def __init__(self, buffer: mmap.mmap, offset: int) -> None:
        self.value = np.ndarray((1,), np.int32, buffer=buffer, offset=offset)
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(buffer)) + offset

    def ring(self) -> None:
        self.value[0] = (int(self.value[0]) + 1) & 0x7FFFFFFF
        _syscall(_SYS_FUTEX, ctypes.c_void_p(self.address), _FUTEX_WAKE, 1 << 30, None, None, 0)

    def sleep(self, seen: int, timeout_s: float) -> None:
        """Sleep until the bell moves off ``seen`` (at once if it already has), a wake-up,
        or ``timeout_s``."""
        whole = int(timeout_s)
        timeout = _Timespec(whole, int((timeout_s - whole) * 1e9))
        _syscall(
            _SYS_FUTEX,
            ctypes.c_void_p(self.address),
            _FUTEX_WAIT,
            ctypes.c_int(seen),
            ctypes.byref(timeout),
            None,
            0,
        )


def supported() -> bool:
    """Whether this machine's memory order lets the lock-free rings run (x86-64 only)."""
    return platform.machine().lower() in ("x86_64", "amd64")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _bells_bytes(num_ranks: int) -> int:
    return _round_up(num_ranks * _BELL_BYTES, 4096)


@dataclass(slots=True)
class Transfer:
    """One message under way: ``data`` (flat uint8) moves ``offset`` bytes so far."""

    peer: int
    tag: int
    data: torch.Tensor  # (total,) uint8, a view of the user's tensor or a staging copy
    total: int
    address: int  # data.data_ptr(): copies are memmove()s, no tensor op on the path
    offset: int = 0
    chunks: int = 0
    done: bool = False
    target: torch.Tensor | None = None  # receive into a staging copy: the real tensor


class _Ring:
    """One ordered pair's ring; this process is its sender or its receiver."""

    def __init__(
        self, buffer: mmap.mmap, offset: int, num_slots: int, slot_bytes: int, peer_bell: _Bell
    ) -> None:
        self.peer_bell = peer_bell  # the other end's: rung after each batch of chunks moved
        self.num_slots = num_slots
        self.slot_bytes = slot_bytes
        slot_stride = _SLOT_HEADER_BYTES + slot_bytes
        self.read_count = np.ndarray((1,), np.int64, buffer=buffer, offset=offset)
        first_slot = offset + _RING_HEADER_BYTES
        self.headers = np.ndarray(
            (num_slots, 4), np.int64, buffer=buffer, offset=first_slot, strides=(slot_stride, 8)
        )  # (slots, 4) int64: stamp, tag, message_bytes, chunk_bytes
        base = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        self.payloads = [
            base + first_slot + slot * slot_stride + _SLOT_HEADER_BYTES for slot in range(num_slots)
        ]  # addresses of the slots' payloads
        self.next_chunk = 0  # this side's next chunk number

    @staticmethod
    def nbytes(num_slots: int, slot_bytes: int) -> int:
        return _RING_HEADER_BYTES + num_slots * (_SLOT_HEADER_BYTES + slot_bytes)

    def try_send(self, transfer: Transfer) -> bool:
        """Write chunks of ``transfer`` while slots are free; True if any was written."""
        moved = False
        while not transfer.done:
            chunk = self.next_chunk
            if chunk - int(self.read_count[0]) >= self.num_slots:
                break  # ring full: the receiver has not taken slot chunk % N yet
            slot = chunk % self.num_slots
            size = min(self.slot_bytes, transfer.total - transfer.offset)
            if size:
                _memmove(self.payloads[slot], transfer.address + transfer.offset, size)
            header = self.headers[slot]
            header[_TAG] = transfer.tag
            header[_MESSAGE_BYTES] = transfer.total
            header[_CHUNK_BYTES] = size
            header[_STAMP] = chunk + 1  # last: publishes the chunk
            self.next_chunk = chunk + 1
            transfer.offset += size
            transfer.chunks += 1
            transfer.done = transfer.offset >= transfer.total
            moved = True
        if moved:
            self.peer_bell.ring()
        return moved

    def try_recv(self, transfer: Transfer, describe: str) -> bool:
        """Read chunks of ``transfer`` while they are there; True if any was read."""
        moved = False
        while not transfer.done:
            chunk = self.next_chunk
            slot = chunk % self.num_slots
            header = self.headers[slot]
            if int(header[_STAMP]) != chunk + 1:
                break  # not written yet
            tag, total, size = int(header[_TAG]), int(header[_MESSAGE_BYTES]), int(header[3])
            if tag != transfer.tag or total != transfer.total:
                raise RuntimeError(
                    f"shm transport: messages out of order {describe}: the next message has "
                    f"{total} bytes (tag {tag}) but the receive posted expects "
                    f"{transfer.total} bytes (tag {transfer.tag}); sends and receives between "
                    "two ranks must be posted in the same order"
                )
            if size:
                _memmove(transfer.address + transfer.offset, self.payloads[slot], size)
            self.read_count[0] = chunk + 1  # frees the slot for the sender
            self.next_chunk = chunk + 1
            transfer.offset += size
            transfer.chunks += 1
            transfer.done = transfer.offset >= transfer.total
            moved = True
        if moved:
            self.peer_bell.ring()
        return moved


class RingSegment:
    """The segment of one host, mapped in this process, with the rings this rank uses.

    ``ranks`` are the group ranks on this host, in increasing order; every ordered pair of
    them gets a ring, in the order ``(a, b) for a in ranks for b in ranks if a != b``.
    """

    def __init__(
        self,
        path: str,
        buffer: mmap.mmap,
        *,
        rank: int,
        ranks: Sequence[int],
        group_size: int,
        num_slots: int,
        slot_bytes: int,
    ) -> None:
        self.path = path
        self.rank = rank
        self.ranks = tuple(ranks)
        self._buffer = buffer
        header = np.ndarray((_HEADER_BYTES // 8,), np.int64, buffer=buffer, offset=0)
        self._pids = header[8 : 8 + group_size]
        self.bells = {
            r: _Bell(buffer, _HEADER_BYTES + index * _BELL_BYTES)
            for index, r in enumerate(self.ranks)
        }
        self.bell = self.bells[rank]  # this rank's own
        self.send_rings: dict[int, _Ring] = {}
        self.recv_rings: dict[int, _Ring] = {}
        offset = _HEADER_BYTES + _bells_bytes(len(self.ranks))
        ring_bytes = _round_up(_Ring.nbytes(num_slots, slot_bytes), 4096)
        for src in self.ranks:
            for dst in self.ranks:
                if src == dst:
                    continue
                if src == rank:
                    self.send_rings[dst] = _Ring(
                        buffer, offset, num_slots, slot_bytes, self.bells[dst]
                    )
                elif dst == rank:
                    self.recv_rings[src] = _Ring(
                        buffer, offset, num_slots, slot_bytes, self.bells[src]
                    )
                offset += ring_bytes

    @staticmethod
    def nbytes(num_ranks: int, num_slots: int, slot_bytes: int) -> int:
        ring = _round_up(_Ring.nbytes(num_slots, slot_bytes), 4096)
        return _HEADER_BYTES + _bells_bytes(num_ranks) + num_ranks * (num_ranks - 1) * ring

    @classmethod
    def create(
        cls,
        *,
        rank: int,
        ranks: Sequence[int],
        group_size: int,
        num_slots: int,
        slot_bytes: int,
    ) -> RingSegment:
        """Create a new zeroed segment file (its name carries this process's pid, for
        :func:`parnn.transport.remove_segments_of`) and map it."""
        if group_size > _HEADER_BYTES // 8 - 8:
            raise ValueError(f"shm transport supports at most {_HEADER_BYTES // 8 - 8} ranks")
        name = f"{SEGMENT_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path = os.path.join(SEGMENT_DIR, name)
        size = cls.nbytes(len(ranks), num_slots, slot_bytes)
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(descriptor, size)  # tmpfs: zero pages, allocated on first touch
            buffer = mmap.mmap(descriptor, size)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(descriptor)
        header = np.ndarray((4,), np.int64, buffer=buffer, offset=0)
        header[1:4] = (len(ranks), num_slots, slot_bytes)
        header[0] = _MAGIC
        segment = cls(
            path,
            buffer,
            rank=rank,
            ranks=ranks,
            group_size=group_size,
            num_slots=num_slots,
            slot_bytes=slot_bytes,
        )
        segment.set_pid()
        return segment

    @classmethod
    def attach(cls, path: str, *, rank: int, ranks: Sequence[int], group_size: int) -> RingSegment:
        """Map the segment another rank of this host created."""
        descriptor = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(descriptor).st_size
            buffer = mmap.mmap(descriptor, size)
        finally:
            os.close(descriptor)
        magic, count, num_slots, slot_bytes = (
            int(v) for v in np.ndarray((4,), np.int64, buffer=buffer, offset=0)
        )
        if magic != _MAGIC or count != len(ranks):
            raise RuntimeError(f"shm transport: {path} is not this group's segment")
        segment = cls(
            path,
            buffer,
            rank=rank,
            ranks=ranks,
            group_size=group_size,
            num_slots=num_slots,
            slot_bytes=slot_bytes,
        )
        segment.set_pid()
        return segment

    def set_pid(self) -> None:
        self._pids[self.rank] = os.getpid()

    def pid_of(self, rank: int) -> int:
        return int(self._pids[rank])

    def unlink(self) -> None:
        """Remove the file; the mappings stay valid until every rank lets go of them."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def close(self) -> None:
        self.send_rings.clear()
        self.recv_rings.clear()
        with contextlib.suppress(BufferError):  # tensors still viewing it keep it mapped
            self._buffer.close()


def new_transfer(peer: int, tag: int, tensor: torch.Tensor, *, receive: bool) -> Transfer:
    """A transfer of ``tensor``'s bytes: a view when it is contiguous, else a staging copy
    (sent from, or received into and copied back on completion)."""
    source = tensor.detach()
    if source.is_contiguous():
        data = source.reshape(-1).view(torch.uint8)
        return Transfer(peer, tag, data, data.numel(), data.data_ptr())
    staging = torch.empty(source.shape, dtype=source.dtype) if receive else source.contiguous()
    data = staging.reshape(-1).view(torch.uint8)
    return Transfer(
        peer, tag, data, data.numel(), data.data_ptr(), target=source if receive else None
    )


def finish_receive(transfer: Transfer) -> None:
    """Copy a staged receive into its (non-contiguous) tensor."""
    if transfer.target is not None:
        staged = transfer.data.view(transfer.target.dtype).view(transfer.target.shape)
        transfer.target.copy_(staged)
        transfer.target = None
