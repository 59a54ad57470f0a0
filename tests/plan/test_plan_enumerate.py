"""The candidates a plan enumerates: how many, and the rules every one obeys."""

from __future__ import annotations

from collections import Counter

import pytest

from parnn.errors import ConfigError
from parnn.plan import Candidate, enumerate_candidates, thread_counts


def test_thread_counts_are_powers_of_two_and_the_limit() -> None:
    assert thread_counts(1) == (1,)
    assert thread_counts(2) == (1, 2)
    assert thread_counts(6) == (1, 2, 4, 6)
    assert thread_counts(32) == (1, 2, 4, 8, 16, 32)


def test_two_cores_lenet5() -> None:
    candidates = enumerate_candidates(cores=2, num_units=5, batch_size=32)
    labels = [c.label for c in candidates]
    assert labels == [
        "1 process x 1t",
        "1 process x 2t",
        "ddp x2 (1t)",
        "hogwild x2 (1t)",
        "local-sgd x2 (1t)",
        "gpipe 2 ranks (1t)",
        "1f1b 2 ranks (1t)",
        "interleaved-1f1b 2 ranks (1t)",
        "pipedream 2 ranks (1t)",
        "pipedream-2bw 2 ranks (1t)",
    ]
    assert all(c.runnable for c in candidates)  # no room for a hybrid on 2 cores


def test_four_cores_add_hybrids_and_threaded_replicas() -> None:
    candidates = enumerate_candidates(cores=4, num_units=5, batch_size=32)
    axes = Counter(c.axis for c in candidates)
    assert axes["threads"] == 3  # 1, 2, 4 threads
    assert axes["hybrid"] == 3  # ddp x2 of a 2-rank pipeline, one per schedule
    hybrids = [c for c in candidates if c.axis == "hybrid"]
    assert {c.schedule for c in hybrids} == {"gpipe", "1f1b", "interleaved-1f1b"}
    assert all(c.replicas == 2 and c.stages == 2 and c.threads == 1 for c in hybrids)
    four_ranks = {c.schedule for c in candidates if c.axis == "pipeline" and c.stages == 4}
    assert four_ranks == {"gpipe", "1f1b", "pipedream", "pipedream-2bw"}  # interleaved: 8 units
    assert all(c.runnable for c in hybrids)  # parnn pipeline --replicas runs them
    assert any(c.axis == "data" and c.threads == 2 and c.replicas == 2 for c in candidates)


@pytest.mark.parametrize(("cores", "nodes"), [(2, 1), (6, 1), (8, 3), (32, 8)])
def test_every_candidate_fits_the_cores_of_a_node(cores: int, nodes: int) -> None:
    candidates = enumerate_candidates(cores=cores, num_units=16, batch_size=96, nodes=nodes)
    assert len(set(candidates)) == len(candidates)
    for c in candidates:
        assert c.cores_per_node <= cores, c
        assert c.replicas % c.nodes == 0
        if c.axis in ("pipeline", "hybrid"):
            assert 2 <= c.stages and c.stages * c.chunks <= 16
        if c.axis in ("data", "hybrid") and c.engine != "hogwild":
            assert 96 % c.replicas == 0
        if c.engine == "hogwild" or c.axis in ("threads", "pipeline"):
            assert c.nodes == 1
        if c.axis in ("data", "hybrid"):
            assert c.replicas >= 2
    if nodes > 1:
        assert any(c.nodes == nodes for c in candidates)


def test_pipelines_need_units_and_a_divisible_batch() -> None:
    three_units = enumerate_candidates(cores=4, num_units=3, batch_size=32)
    assert all(c.stages <= 3 for c in three_units)
    assert not any(c.schedule == "interleaved-1f1b" for c in three_units)  # 2 x 2 > 3 units
    odd = enumerate_candidates(cores=2, num_units=5, batch_size=7)
    assert not any(c.engine in ("ddp", "local-sgd") for c in odd)  # 7 does not split in 2
    assert any(c.engine == "hogwild" for c in odd)  # each worker takes its own 7


def test_bad_numbers_are_refused() -> None:
    with pytest.raises(ConfigError, match="must be >= 1"):
        enumerate_candidates(cores=0, num_units=5, batch_size=8)
    with pytest.raises(ConfigError, match="unknown axis"):
        Candidate(axis="tensor", threads=1)
    with pytest.raises(ConfigError, match="spread evenly"):
        Candidate(axis="data", threads=1, replicas=3, engine="ddp", nodes=2)


def test_the_asynchronous_schedules_are_pipelines_never_hybrids() -> None:
    candidates = enumerate_candidates(cores=4, num_units=5, batch_size=32)
    pipedream = [c for c in candidates if c.schedule in ("pipedream", "pipedream-2bw")]
    assert {(c.schedule, c.stages) for c in pipedream} == {
        ("pipedream", 2), ("pipedream-2bw", 2), ("pipedream", 4), ("pipedream-2bw", 4),
    }  # fmt: skip
    assert all(c.axis == "pipeline" and c.chunks == 1 for c in pipedream)
    # no flush at which replicas could average: hybrids keep to the synchronous schedules
    assert {c.schedule for c in candidates if c.axis == "hybrid"} == {
        "gpipe", "1f1b", "interleaved-1f1b",
    }  # fmt: skip


def test_pipedream_2bw_needs_as_many_microbatches_as_ranks() -> None:
    # a batch of 1 cannot give pipedream-2bw's m >= 2 micro-batches; pipedream runs m = 1
    schedules = {c.schedule for c in enumerate_candidates(cores=2, num_units=5, batch_size=1)}
    assert "pipedream" in schedules and "pipedream-2bw" not in schedules
