"""The simulator's message model: with messages as torch's schedules post them, a
message's latency starts once both sides posted it and 1F1B waits for its sends; the comm
profile knows which transport it measured."""

from __future__ import annotations

import pytest

from parnn.errors import ConfigError
from parnn.partition.comm import CommModel
from parnn.partition.measure.cache import comm_file_name
from parnn.partition.measure.comm import measure_comm_model
from parnn.partition.simulate import StageTimes, simulate


def _times(latency: float, messages: str) -> StageTimes:
    return StageTimes(
        forward_s=(1.0, 1.0), backward_s=(2.0, 2.0), link_latency_s=latency, messages=messages
    )


def test_posted_messages_pay_their_latency_after_the_receive_is_posted() -> None:
    # GPipe, 2 stages, m = 2, latency 0.5. Rank 1 posts the receive of F1 when it is free
    # (2.5), after F1 was sent (2.0): F1 starts at 2.5 + 0.5, not at 2.0 + 0.5 (eager).
    #   rank 0 | F0 F1 ..............  B0 .. B1
    #   rank 1 |  . F0 . F1 B0 B1
    run = simulate(_times(0.5, "posted"), schedule="gpipe", num_microbatches=2)
    starts = {(e.rank, e.kind, e.microbatch): e.start_s for e in run.events}
    assert starts[(1, "forward", 1)] == 3.0
    assert starts[(0, "backward", 0)] == 6.5  # B0 of rank 1 ends at 6.0
    assert starts[(0, "backward", 1)] == 9.0  # rank 0 free at 8.5, B1 sent at 8.0
    assert run.step_time_s == 11.0
    assert simulate(_times(0.5, "eager"), schedule="gpipe", num_microbatches=2).step_time_s == 10


def test_1f1b_waits_for_each_send_before_the_next_action() -> None:
    run = simulate(_times(0.5, "posted"), schedule="1f1b", num_microbatches=2)
    starts = {(e.rank, e.kind, e.microbatch): e.start_s for e in run.events}
    assert starts[(0, "forward", 1)] == 1.5  # F0's send (ends 1.0) completes at 1.5
    gpipe = simulate(_times(0.5, "posted"), schedule="gpipe", num_microbatches=2)
    assert gpipe.events[1].start_s == 1.0  # GPipe does not wait for the send


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_without_latency_both_message_models_agree(schedule: str) -> None:
    eager = simulate(_times(0.0, "eager"), schedule=schedule, num_microbatches=4)
    posted = simulate(_times(0.0, "posted"), schedule=schedule, num_microbatches=4)
    assert posted.step_time_s == eager.step_time_s


def test_an_unknown_message_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="messages"):
        StageTimes(forward_s=(1.0,), backward_s=(1.0,), messages="telepathy")


def test_the_comm_model_records_its_transport_and_caches_it_apart() -> None:
    model = CommModel(latency_s=2e-5, bandwidth_bytes_per_s=5e9, transport="shm")
    assert CommModel.from_dict(model.to_dict()) == model
    assert CommModel.from_dict({"latency_s": 1e-3, "bandwidth_bytes_per_s": 1e9}).transport == (
        "gloo"
    )
    gloo = comm_file_name(backend="gloo", threads=1, torch_version="2.13")
    shm = comm_file_name(backend="gloo", threads=1, torch_version="2.13", transport="shm")
    assert gloo == "comm-gloo-t1-torch2.13.json" and shm == "comm-gloo-shm-t1-torch2.13.json"


@pytest.mark.timeout(120)
def test_the_shm_transport_is_measured_and_fitted_like_gloo() -> None:
    model = measure_comm_model(
        sizes_bytes=(1024, 65536, 1 << 20), warmup=1, repeats=2, transport="shm"
    )
    assert model.transport == "shm"
    assert model.latency_s >= 0 and model.bandwidth_bytes_per_s > 0
    assert len(model.times_s) == 3 and all(t > 0 for t in model.times_s)
