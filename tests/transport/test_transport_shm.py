"""The shared-memory transport: every byte arrives, in order, through torch.distributed's
own send/recv/isend/irecv/batch_isend_irecv; a dead or silent peer ends the run with its
rank named; nothing is left in /dev/shm."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from parnn.errors import RankFailedError
from parnn.launch import LaunchConfig, launch
from parnn.transport import SEGMENT_DIR, SEGMENT_PREFIX, new_transport_group
from parnn.transport.group import ShmProcessGroup, TransportError

# Odd sizes (float32 elements): empty, one, not a multiple of a cache line, exactly a
# slot, one more than a slot, several slots (multi-chunk with a small ring).
SIZES = (0, 1, 3, 17, 1000, 1024, 1025, 5000)
SLOT_BYTES = 4096  # = 1024 float32: sizes above travel in several chunks
NUM_SLOTS = 2


def _segments() -> set[str]:
    return {name for name in os.listdir(SEGMENT_DIR) if name.startswith(SEGMENT_PREFIX)}


def _payload(src: int, dst: int, index: int) -> torch.Tensor:
    size = SIZES[(index * 7 + src + 3 * dst) % len(SIZES)]
    # Values that identify (src, dst, index, position): a lost or reordered message shows.
    return (
        torch.arange(size, dtype=torch.float32) + 1000.0 * index + 1e6 * src + 1e7 * dst
    )  # (size,)


def _stress(rank: int, world_size: int, rounds: int) -> int:
    """Every rank sends ``rounds`` messages of odd sizes to every other rank, posted in
    batches of isends and irecvs whose works are waited in reverse order."""
    group = new_transport_group("shm", slot_bytes=SLOT_BYTES, num_slots=NUM_SLOTS)
    assert isinstance(group, ShmProcessGroup)
    checked = 0
    batch = 5
    for start in range(0, rounds, batch):
        ops, received = [], []
        for peer in range(world_size):
            if peer == rank:
                continue
            for index in range(start, min(rounds, start + batch)):
                ops.append(dist.P2POp(dist.isend, _payload(rank, peer, index), peer, group))
                buffer = torch.full_like(_payload(peer, rank, index), -1.0)
                ops.append(dist.P2POp(dist.irecv, buffer, peer, group))
                received.append((peer, index, buffer))
        works = dist.batch_isend_irecv(ops)
        for work in reversed(works):
            work.wait()
        for peer, index, buffer in received:
            torch.testing.assert_close(buffer, _payload(peer, rank, index), rtol=0, atol=0)
            checked += 1
    # Blocking send/recv, a non-contiguous receive and a collective (gloo's) on the group.
    peer = (rank + 1) % world_size
    source = (rank - 1) % world_size
    outgoing = torch.arange(12.0).reshape(3, 4) + rank
    incoming = torch.zeros(4, 3).t()  # (3, 4), not contiguous
    if rank % 2 == 0:
        dist.send(outgoing, dst=peer, group=group)
        dist.recv(incoming, src=source, group=group)
    else:
        dist.recv(incoming, src=source, group=group)
        dist.send(outgoing, dst=peer, group=group)
    torch.testing.assert_close(incoming, torch.arange(12.0).reshape(3, 4) + source)
    total = torch.tensor([float(checked)])
    dist.all_reduce(total, group=group)
    assert group.messages["shm"] == 2 * checked + 2
    return int(total.item())


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("ignore:oversubscribed")  # 4 ranks on 2 cores: the point
def test_many_odd_messages_between_four_oversubscribed_ranks_arrive_intact_and_in_order() -> None:
    before = _segments()
    rounds = 40
    results = launch(_stress, LaunchConfig(num_processes=4), rounds)
    assert results == [4 * 3 * rounds] * 4
    assert _segments() <= before  # unlinked at set-up, nothing left after


def _mismatched(rank: int, world_size: int) -> None:
    group = new_transport_group("shm")
    if rank == 0:
        dist.send(torch.zeros(8), dst=1, group=group)
    else:
        dist.recv(torch.zeros(16), src=0, group=group)


@pytest.mark.timeout(120)
def test_a_message_that_does_not_match_the_posted_receive_fails_loudly() -> None:
    with pytest.raises(RankFailedError) as failure:
        launch(_mismatched, LaunchConfig(num_processes=2))
    assert failure.value.rank == 1
    assert "out of order" in failure.value.detail and "32 bytes" in failure.value.detail


def _killed_mid_send(rank: int, world_size: int, stamp: str) -> None:
    # A 64 KiB message through a ring of 2 slots of 4 KiB: the sender writes two chunks
    # and dies with the rest unsent; the receiver waits for the rest.
    group = new_transport_group("shm", slot_bytes=SLOT_BYTES, num_slots=NUM_SLOTS)
    big = torch.ones(16 * 1024)  # (16384,) float32 = 64 KiB
    if rank == 1:
        work = dist.isend(big, dst=0, group=group)
        assert work is not None and not work.is_completed()
        Path(stamp).write_text(repr(time.monotonic()))  # the system-wide clock: when it died
        os.kill(os.getpid(), signal.SIGKILL)
    dist.recv(torch.zeros_like(big), src=1, group=group)


@pytest.mark.timeout(120)
def test_a_rank_killed_mid_send_ends_the_run_names_it_and_leaves_no_segment(
    tmp_path: Path,
) -> None:
    before = _segments()
    stamp = tmp_path / "killed_at"
    with pytest.raises(RankFailedError) as failure:
        launch(_killed_mid_send, LaunchConfig(num_processes=2), str(stamp))
    assert time.monotonic() - float(stamp.read_text()) < 30  # from the kill to the error
    assert failure.value.rank == 1 and "SIGKILL" in failure.value.detail
    assert _segments() <= before


def _silent_peer(rank: int, world_size: int) -> str:
    group = new_transport_group("shm", timeout_s=1.0)
    if rank == 0:
        started = time.monotonic()
        try:
            dist.recv(torch.zeros(4), src=1, group=group)
        except TransportError as exc:
            waited = time.monotonic() - started
            assert waited < 10, waited
            message = str(exc)
        else:
            message = "no error"
    else:
        message = ""
    dist.barrier()  # rank 1 stays alive (and silent) until rank 0 gave up
    return message


@pytest.mark.timeout(120)
def test_a_receive_from_a_silent_peer_times_out_naming_the_peer() -> None:
    message = launch(_silent_peer, LaunchConfig(num_processes=2))[0]
    assert "rank 0 waited" in message and "from rank 1" in message and "timed out" in message


def _gloo_transport(rank: int, world_size: int) -> float:
    group = new_transport_group("gloo")
    assert group is None  # the default group: the backend's own sends
    value = torch.tensor([float(rank + 1)])
    if rank == 0:
        dist.send(value, dst=1, group=group)
        return 0.0
    dist.recv(value, src=0, group=group)
    return float(value.item())


@pytest.mark.timeout(120)
def test_the_gloo_transport_is_the_default_group() -> None:
    assert launch(_gloo_transport, LaunchConfig(num_processes=2))[1] == 1.0
