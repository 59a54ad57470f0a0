"""parnn.trace: spans -> Chrome trace JSON with one named track per stage/worker."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from parnn.errors import DataError
from parnn.launch import LaunchConfig, launch
from parnn.trace import (
    TraceRecorder,
    chrome_trace,
    load_chrome_trace,
    track_names,
    write_chrome_trace,
)


def test_span_times_the_block_and_keeps_args_added_inside() -> None:
    recorder = TraceRecorder(track=2, track_name="stage 2")
    with recorder.span("forward", "compute", microbatch=3) as info:
        info["loss"] = 0.5
    (event,) = recorder.events
    assert event["name"] == "forward" and event["category"] == "compute"
    assert event["duration_s"] >= 0
    assert event["args"] == {"microbatch": 3, "loss": 0.5}
    assert (event["track"], event["track_name"], event["process_name"]) == (2, "stage 2", "parnn")


def test_a_span_that_raises_is_recorded_with_the_error() -> None:
    recorder = TraceRecorder(track=0)
    with pytest.raises(KeyError), recorder.span("step", "compute"):
        raise KeyError("x")
    assert recorder.events[0]["args"] == {"error": "KeyError"}
    assert recorder.track_name == "track 0"


def test_bad_spans_and_tracks_are_refused() -> None:
    with pytest.raises(ValueError, match="duration_s=-1"):
        TraceRecorder(track=0).add("send", "comm", 1.0, -1.0)
    with pytest.raises(ValueError, match="track=-1"):
        TraceRecorder(track=-1)


def test_events_survive_pickling_as_between_ranks() -> None:
    recorder = TraceRecorder(track=1, track_name="worker 1")
    recorder.add("all_reduce", "comm", 10.0, 0.25, bytes=4096)
    assert pickle.loads(pickle.dumps(recorder.events)) == recorder.events


def _two_stages() -> tuple[TraceRecorder, TraceRecorder]:
    stage0 = TraceRecorder(track=0, track_name="stage 0", process_name="pipeline")
    stage1 = TraceRecorder(track=1, track_name="stage 1", process_name="pipeline")
    stage1.add("F1", "forward", 100.002, 0.001, microbatch=1)
    stage0.add("F0", "forward", 100.000, 0.0015, microbatch=0)
    stage0.add("F1", "forward", 100.0015, 0.0005, microbatch=1)
    return stage0, stage1


def test_chrome_trace_has_sorted_complete_events_in_microseconds() -> None:
    trace = chrome_trace(_two_stages(), metadata={"schedule": "gpipe"})
    spans = [event for event in trace["traceEvents"] if event["ph"] == "X"]
    assert [(s["name"], s["tid"]) for s in spans] == [("F0", 0), ("F1", 0), ("F1", 1)]
    assert [s["ts"] for s in spans] == [0.0, 1500.0, 2000.0]
    assert [s["dur"] for s in spans] == [1500.0, 500.0, 1000.0]
    assert {s["pid"] for s in spans} == {1}
    assert spans[2]["args"] == {"microbatch": 1} and spans[2]["cat"] == "forward"
    assert trace["displayTimeUnit"] == "ms"
    assert trace["metadata"]["schedule"] == "gpipe"
    assert trace["metadata"]["origin_s"] == pytest.approx(100.0)


def test_every_track_and_process_is_named_before_the_spans() -> None:
    trace = chrome_trace(_two_stages())
    phases = [event["ph"] for event in trace["traceEvents"]]
    assert phases == sorted(phases, key=lambda phase: phase != "M")  # metadata first
    assert track_names(trace) == {(1, 0): "stage 0", (1, 1): "stage 1"}
    processes = [e for e in trace["traceEvents"] if e["name"] == "process_name"]
    assert processes == [
        {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "pipeline"}}
    ]


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    stage0, stage1 = _two_stages()
    gathered: list[list[dict[str, Any]]] = [stage0.events, stage1.events]  # as rank 0 gets them
    path = write_chrome_trace(tmp_path / "traces" / "run.json", gathered, metadata={"steps": 2})
    assert path == tmp_path / "traces" / "run.json"
    loaded = load_chrome_trace(path)
    assert loaded == json.loads(json.dumps(chrome_trace(gathered, metadata={"steps": 2})))
    assert loaded == chrome_trace([stage0, stage1], metadata={"steps": 2})


def test_processes_get_their_own_pid() -> None:
    stage = TraceRecorder(track=0, process_name="pipeline")
    worker = TraceRecorder(track=0, process_name="data parallel")
    stage.add("a", "x", 0.0, 1.0)
    worker.add("b", "x", 0.5, 1.0)
    trace = chrome_trace([stage, worker])
    assert sorted(track_names(trace)) == [(1, 0), (2, 0)]


def test_an_empty_trace_is_still_valid(tmp_path: Path) -> None:
    trace = load_chrome_trace(write_chrome_trace(tmp_path / "empty.json", []))
    assert trace["traceEvents"] == []


def test_malformed_events_and_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="trace event 0 lacks start_s"):
        chrome_trace([{"name": "x", "category": "c", "duration_s": 1.0, "track": 0}])
    with pytest.raises(DataError, match="cannot trace int"):
        chrome_trace([3])
    with pytest.raises(DataError, match="does not exist"):
        load_chrome_trace(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_chrome_trace(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(DataError, match="no traceEvents"):
        load_chrome_trace(tmp_path / "list.json")


def _record_around_a_barrier(rank: int, world_size: int) -> list[dict[str, Any]]:
    recorder = TraceRecorder(track=rank, track_name=f"worker {rank}")
    with recorder.span("barrier", "comm"):
        dist.barrier()
    with recorder.span("matmul", "compute", rank=rank):
        torch.ones(64, 64) @ torch.ones(64, 64)
    return recorder.events


@pytest.mark.timeout(60)
def test_ranks_send_their_events_to_one_trace(tmp_path: Path) -> None:
    per_rank = launch(_record_around_a_barrier, LaunchConfig(num_processes=2))
    trace = load_chrome_trace(write_chrome_trace(tmp_path / "trace.json", per_rank))
    assert track_names(trace) == {(1, 0): "worker 0", (1, 1): "worker 1"}
    spans = [event for event in trace["traceEvents"] if event["ph"] == "X"]
    assert sorted((s["tid"], s["name"]) for s in spans) == [
        (0, "barrier"),
        (0, "matmul"),
        (1, "barrier"),
        (1, "matmul"),
    ]
    # One clock for every process of the machine: the barriers end together, so every
    # span lies within a minute of the first (a per-process clock would scatter them).
    assert all(0 <= s["ts"] < 60e6 for s in spans)
    barrier_ends = [s["ts"] + s["dur"] for s in spans if s["name"] == "barrier"]
    assert abs(barrier_ends[0] - barrier_ends[1]) < 5e6
